// One DNS query in, one decision out: answer it (with the response's bytes), forward it upstream,
// refuse it, or drop it. Pure over the record table: the server owns the sockets, this file the
// protocol. The wire format is dns-packet's (docs/design.md D18); the header is checked
// before it decodes anything, so hostile packets cost a few comparisons:
//   not a query (QR set), more or fewer than one question, any answer or authority record, more
//   than one additional record (EDNS's OPT), shorter than a header, longer than the transport
//   allows, or anything dns-packet cannot decode (truncated, compression loops, bad labels)
//   -> dropped and counted, no answer at all (answering junk only helps reflection attacks).
import * as packet from 'dns-packet';
import { RecordTable, type DnsRecord } from './table';
import { normalizeName, TTL_SEC } from './names';

export type Outcome =
  | { kind: 'answer'; response: Buffer; rcode: 'NOERROR' | 'NXDOMAIN' | 'REFUSED' | 'NOTIMP' | 'SERVFAIL'; records: number }
  | { kind: 'forward' }
  | { kind: 'drop'; reason: string };

export interface QueryContext {
  table: RecordTable;
  /** The client's address (the packet's source). */
  client: string;
  /** The network whose gateway the query arrived on. */
  network?: string;
  transport: 'udp' | 'tcp';
  /** Whether upstream resolvers are known (else other names answer SERVFAIL). */
  upstream: boolean;
  ttl?: number;
}

const HEADER = 12;
const MAX_UDP_QUERY = 4096;
/** A UDP answer fits in 512 bytes unless the query's EDNS allows more (up to 1232, the DNS flag day's size). */
const UDP_PLAIN = 512;
const UDP_EDNS_MAX = 1232;

const QR = 0x8000;
const OPCODE = 0x7800;
const RD = packet.RECURSION_DESIRED;
const RA = packet.RECURSION_AVAILABLE;
const AA = packet.AUTHORITATIVE_ANSWER;
const TC = packet.TRUNCATED_RESPONSE;
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

/** The header checks: the reason to drop, or null when the packet may be decoded. */
export function precheck(msg: Buffer, transport: 'udp' | 'tcp'): string | null {
  if (msg.length < HEADER) return 'shorter than a DNS header';
  if (transport === 'udp' && msg.length > MAX_UDP_QUERY) return 'longer than a UDP query may be';
  const flags = msg.readUInt16BE(2);
  if (flags & QR) return 'a response, not a query';
  if (msg.readUInt16BE(4) !== 1) return `question count ${msg.readUInt16BE(4)} (a query has one)`;
  if (msg.readUInt16BE(6) !== 0 || msg.readUInt16BE(8) !== 0) return 'answer or authority records in a query';
  if (msg.readUInt16BE(10) > 1) return `additional count ${msg.readUInt16BE(10)} (at most EDNS's OPT)`;
  return null;
}

export function handleQuery(msg: Buffer, ctx: QueryContext): Outcome {
  const why = precheck(msg, ctx.transport);
  if (why) return { kind: 'drop', reason: why };
  let q: packet.Packet;
  try {
    q = packet.decode(msg);
  } catch (e) {
    return { kind: 'drop', reason: `undecodable: ${(e as Error).message}` };
  }
  const question = q.questions?.[0];
  if (!question || typeof question.name !== 'string') return { kind: 'drop', reason: 'no question' };
  const flags = msg.readUInt16BE(2);
  const opt = (q.additionals ?? []).find((a) => a.type === 'OPT') as packet.OptAnswer | undefined;
  const limit = ctx.transport === 'tcp' ? 65535 : Math.min(Math.max(opt?.udpPayloadSize ?? UDP_PLAIN, UDP_PLAIN), UDP_EDNS_MAX);
  const reply = (rcode: keyof typeof RCODE, answers: DnsRecord[] = [], aa = false): Outcome => ({
    kind: 'answer', rcode, records: answers.length,
    response: encodeReply(q, question, flags, rcode, answers, { aa, ra: ctx.upstream, limit, ttl: ctx.ttl ?? TTL_SEC, edns: !!opt }),
  });

  if ((flags & OPCODE) !== 0) return reply('NOTIMP');
  const scope = ctx.table.scopeOf(ctx.client, ctx.network);
  // Not a client on a knit network: no recursion (an open resolver), no names either.
  if (!scope.length) return reply('REFUSED');
  const name = normalizeName(question.name);
  const cls = question.class ?? 'IN';
  const res = cls === 'IN' || cls === 'ANY' ? ctx.table.resolve(scope, name) : null;
  if (res) {
    const qtype = String(question.type);
    const family = qtype === 'A' ? 4 : qtype === 'AAAA' ? 6 : qtype === 'ANY' ? 0 : -1;
    // Another type of a known name: NOERROR with no answer (NODATA), never NXDOMAIN, which
    // would tell a resolver asking A and AAAA together that the name does not exist.
    return reply('NOERROR', family < 0 ? [] : ctx.table.answer(res, family as 0 | 4 | 6), true);
  }
  if (RecordTable.isKnitName(name)) return reply('NXDOMAIN', [], true);
  if (!ctx.table.forwards(scope)) return reply('REFUSED');
  if (!ctx.upstream) return reply('SERVFAIL');
  return { kind: 'forward' };
}

interface ReplyOptions { aa: boolean; ra: boolean; limit: number; ttl: number; edns: boolean }

function encodeReply(q: packet.Packet, question: packet.Question, qflags: number, rcode: keyof typeof RCODE, records: DnsRecord[], o: ReplyOptions): Buffer {
  const base = (qflags & RD) | (o.ra ? RA : 0) | (o.aa ? AA : 0) | RCODE[rcode];
  const additionals: packet.Answer[] = o.edns ? [{ type: 'OPT', name: '.', udpPayloadSize: UDP_EDNS_MAX, flags: 0, options: [] } as unknown as packet.Answer] : [];
  const encode = (n: number, flags: number): Buffer => packet.encode({
    type: 'response', id: q.id ?? 0, flags, questions: [question],
    answers: records.slice(0, n).map((r) => ({ type: r.family === 4 ? 'A' : 'AAAA', name: question.name, ttl: o.ttl, class: 'IN', data: r.address }) as packet.Answer),
    additionals,
  });
  let out = encode(records.length, base);
  if (out.length <= o.limit) return out;
  // Too big for the client's UDP size: as many answers as fit, TC set (the client may ask over TCP).
  let n = records.length;
  while (n > 0 && out.length > o.limit) out = encode(--n, base | TC);
  return out;
}

/** A SERVFAIL for a query the server could not forward (no upstream answered): id and question kept. */
export function servfail(msg: Buffer, upstreamKnown: boolean): Buffer | null {
  try {
    const q = packet.decode(msg);
    const question = q.questions?.[0];
    if (!question) return null;
    return encodeReply(q, question, msg.readUInt16BE(2), 'SERVFAIL', [], { aa: false, ra: upstreamKnown, limit: 65535, ttl: 0, edns: false });
  } catch {
    return null;
  }
}
