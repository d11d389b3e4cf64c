// The resolver's sockets: UDP and TCP on port 53 of each knit gateway address on this node, and
// nothing else (never a wildcard, never the underlay). The set of addresses is given from outside
// (pkg/dns/agent.ts) and changes as networks come and go; the protocol is pkg/dns/query.ts.
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type { Logger } from '../cni/log';
import { familyOf } from '../ip/ip';
import { handleQuery, servfail } from './query';
import type { RecordTable } from './table';
import type { Forwarder } from './upstream';

export interface DnsStats {
  queries: number;
  /** Answered by knit, by response code. */
  answers: Record<string, number>;
  forwarded: number;
  /** Forwarded queries no upstream answered in time (SERVFAIL sent). */
  upstreamFailures: number;
  /** Malformed packets dropped, unanswered. */
  dropped: number;
  listeners: number;
  bindErrors: number;
}

export interface Listen {
  address: string;
  /** The network whose gateway this is. */
  network: string;
}

interface Bound { listen: Listen; udp: dgram.Socket; tcp: net.Server }

const TCP_IDLE_MS = 10_000;
const MAX_TCP = 256;

export class DnsServer {
  readonly stats: DnsStats = { queries: 0, answers: {}, forwarded: 0, upstreamFailures: 0, dropped: 0, listeners: 0, bindErrors: 0 };
  private readonly bound = new Map<string, Bound>();
  private tcpConns = 0;
  /** Addresses whose bind failed, so the same failure is logged once. */
  private readonly failed = new Set<string>();

  constructor(private readonly o: { table: RecordTable; forwarder: Forwarder; log: Logger; port?: number; ttl?: number }) {}

  addresses(): ReadonlySet<string> { return new Set(this.bound.keys()); }

  /** Listens on exactly these addresses: new ones bound, gone ones closed. */
  async listen(want: readonly Listen[]): Promise<void> {
    const keep = new Map(want.map((l) => [l.address, l]));
    for (const [addr, b] of this.bound) {
      if (keep.get(addr)?.network === b.listen.network) continue;
      this.close(b);
      this.bound.delete(addr);
      this.o.log.info(`dns: stopped listening on ${addr}`);
    }
    for (const l of keep.values()) {
      if (this.bound.has(l.address)) continue;
      try {
        this.bound.set(l.address, await this.bind(l));
        this.failed.delete(l.address);
        this.o.log.info(`dns: listening on ${l.address}:${this.o.port ?? 53} (network ${l.network})`);
      } catch (e) {
        this.stats.bindErrors++;
        if (!this.failed.has(l.address)) this.o.log.warn(`dns: cannot listen on ${l.address}:${this.o.port ?? 53}: ${(e as Error).message}`);
        this.failed.add(l.address);
      }
    }
    this.stats.listeners = this.bound.size;
  }

  stop(): void {
    for (const b of this.bound.values()) this.close(b);
    this.bound.clear();
    this.stats.listeners = 0;
  }

  private close(b: Bound): void {
    try { b.udp.close(); } catch { /* closed */ }
    b.tcp.close();
  }

  private async bind(l: Listen): Promise<Bound> {
    const port = this.o.port ?? 53;
    const udp = dgram.createSocket({ type: familyOf(l.address) === 6 ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ address: l.address, port, exclusive: true }, () => { udp.off('error', reject); resolve(); });
    });
    udp.on('error', (e) => this.o.log.warn(`dns: udp ${l.address}: ${e.message}`));
    udp.on('message', (msg, rinfo) => void this.onUdp(l, udp, msg, rinfo));
    const tcp = net.createServer((s) => this.onTcp(l, s));
    tcp.maxConnections = MAX_TCP;
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: l.address, port, exclusive: true }, () => { tcp.off('error', reject); resolve(); });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    tcp.on('error', (e) => this.o.log.warn(`dns: tcp ${l.address}: ${e.message}`));
    return { listen: l, udp, tcp };
  }

  /** The answer to one query, or null (dropped). Never throws. */
  private async answer(l: Listen, msg: Buffer, client: string, transport: 'udp' | 'tcp'): Promise<Buffer | null> {
    this.stats.queries++;
    try {
      const upstream = this.o.forwarder.upstreams().length > 0;
      const out = handleQuery(msg, { table: this.o.table, client, network: l.network, transport, upstream, ...(this.o.ttl !== undefined ? { ttl: this.o.ttl } : {}) });
      if (out.kind === 'drop') {
        this.stats.dropped++;
        this.o.log.debug(`dns: dropped a packet from ${client}: ${out.reason}`);
        return null;
      }
      if (out.kind === 'answer') {
        this.stats.answers[out.rcode] = (this.stats.answers[out.rcode] ?? 0) + 1;
        return out.response;
      }
      this.stats.forwarded++;
      const r = await this.o.forwarder.forward(msg, transport);
      if (r) return r;
      this.stats.upstreamFailures++;
      return servfail(msg, upstream);
    } catch (e) {
      // A bug in the codec or here must cost one query, never knitd.
      this.stats.dropped++;
      this.o.log.warn(`dns: query from ${client} failed: ${(e as Error).message}`);
      return null;
    }
  }

  private async onUdp(l: Listen, sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    const r = await this.answer(l, msg, rinfo.address, 'udp');
    // The listener may have closed while a forwarded query waited (send then throws): nothing to answer on.
    if (r) try { sock.send(r, rinfo.port, rinfo.address, () => { /* an unreachable client: nothing to do */ }); } catch { /* closed */ }
  }

  private onTcp(l: Listen, s: net.Socket): void {
    this.tcpConns++;
    let buf = Buffer.alloc(0);
    let chain = Promise.resolve();
    s.setTimeout(TCP_IDLE_MS, () => s.destroy());
    s.on('error', () => s.destroy());
    s.on('close', () => { this.tcpConns--; });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > 2 + 65535 * 2) { this.stats.dropped++; s.destroy(); return; }
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        // Answers in the order asked (pipelined queries over one connection).
        chain = chain.then(async () => {
          const r = await this.answer(l, msg, s.remoteAddress ?? '', 'tcp');
          if (!r) { s.destroy(); return; }
          const len = Buffer.alloc(2);
          len.writeUInt16BE(r.length);
          if (!s.destroyed) s.write(Buffer.concat([len, r]));
        });
      }
    });
  }
}
