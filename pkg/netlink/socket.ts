// A Netlink handle: one NETLINK_ROUTE (or NETLINK_XFRM) socket bound inside one network namespace,
// reused for every request there. Requests are synchronous (a send, then blocking
// receives until the matching ack or NLMSG_DONE): rtnetlink replies in microseconds
// and a plugin runs its steps in order anyway.
import { NETLINK_ROUTE, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN } from './constants';
import { decodeDone, decodeError, MsgWriter, NlMsg, parseMessages } from './codec';
import { fromNative, NetlinkError } from './errors';
import { native } from './native';

/** Decodes one reply message while its bytes are valid; must copy what it keeps. */
export type Decoder<T> = (msg: NlMsg) => T | undefined;

// One receive buffer for all handles: requests are synchronous, so only one is ever in
// flight, and every decoder copies what it keeps before the next recv overwrites it.
// 256 KiB is far above the kernel's dump chunk (≤ 32 KiB) — a bigger datagram throws.
let shared: Buffer | undefined;
function recvBuffer(): Buffer {
  return (shared ??= Buffer.allocUnsafe(256 * 1024));
}

const DUMP_RETRIES = 5;

export class Netlink {
  private fd: number;
  private seq: number;

  private constructor(fd: number, readonly netnsPath: string | null) {
    this.fd = fd;
    // Start from a time-derived value so replies meant for an earlier process reusing
    // the port id can never match.
    this.seq = (Date.now() & 0x3fffffff) >>> 0;
  }

  /**
   * Opens a socket inside netnsPath (a /run/netns/... or /proc/<pid>/ns/net path), or here;
   * protocol NETLINK_ROUTE unless told (xfrm.ts: NETLINK_XFRM).
   */
  static open(netnsPath?: string | null, protocol: number = NETLINK_ROUTE): Netlink {
    const path = netnsPath || null;
    let fd: number;
    try {
      fd = native().openSocket(path, protocol, 0);
    } catch (err) {
      fromNative(err);
    }
    return new Netlink(fd, path);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      native().close(fd);
    } catch {
      /* nothing useful to do */
    }
  }

  /** Sends a request expecting only an acknowledgement; throws NetlinkError on refusal. */
  exec(w: MsgWriter, op: string): void {
    this.roundTrip(w, op, undefined, false);
  }

  /** Sends a non-dump request and returns the decoded replies that precede the ack. */
  query<T>(w: MsgWriter, op: string, decode: Decoder<T>): T[] {
    return this.roundTrip(w, op, decode, false);
  }

  /** Sends a dump request (the writer must carry NLM_F_DUMP) and decodes every entry. */
  dump<T>(w: MsgWriter, op: string, decode: Decoder<T>): T[] {
    for (let attempt = 1; ; attempt++) {
      try {
        return this.roundTrip(w, op, decode, true);
      } catch (err) {
        // The kernel's view changed mid-dump (NLM_F_DUMP_INTR): ask again.
        if (!(err instanceof NetlinkError && err.code === 'EINTR' && attempt < DUMP_RETRIES)) throw err;
      }
    }
  }

  private roundTrip<T>(w: MsgWriter, op: string, decode: Decoder<T> | undefined, isDump: boolean): T[] {
    if (this.fd < 0) throw new NetlinkError(op, 9 /* EBADF */, 'netlink handle is closed');
    const N = native();
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const req = w.finish(seq);
    // Non-dump requests always ask for an ack so success is confirmed, not assumed;
    // dumps end with NLMSG_DONE instead.
    req.writeUInt16LE(w.flags | NLM_F_REQUEST | (isDump ? NLM_F_DUMP : NLM_F_ACK), 6);
    try {
      N.send(this.fd, req);
    } catch (err) {
      fromNative(err, op);
    }
    const buf = recvBuffer();
    const out: T[] = [];
    let interrupted = false;
    for (;;) {
      let n: number;
      try {
        n = N.recv(this.fd, buf);
      } catch (err) {
        fromNative(err, op);
      }
      let msgs: NlMsg[];
      try {
        msgs = parseMessages(buf, n);
      } catch (err) {
        throw new NetlinkError(op, 74 /* EBADMSG */, (err as Error).message);
      }
      for (const msg of msgs) {
        // A reply to an earlier request that was abandoned (timeout, exception): skip it.
        if (msg.seq !== seq) continue;
        if (msg.type === NLMSG_ERROR) {
          const e = decodeError(msg);
          if (e.errno !== 0) throw new NetlinkError(op, e.errno, e.extack);
          return out;
        }
        if (msg.type === NLMSG_DONE) {
          // NLMSG_DONE may carry an error (int) of a dump that failed part way.
          const e = decodeDone(msg);
          if (e.errno !== 0) throw new NetlinkError(op, e.errno, e.extack);
          if (interrupted) throw new NetlinkError(op, 4 /* EINTR */, 'dump interrupted by a concurrent change');
          return out;
        }
        if (msg.type === NLMSG_NOOP || msg.type === NLMSG_OVERRUN) continue;
        if (msg.flags & NLM_F_DUMP_INTR) interrupted = true;
        if (decode) {
          const v = decode(msg);
          if (v !== undefined) out.push(v);
        }
      }
    }
  }
}

/** Opens a handle for the duration of fn and closes it afterwards. */
export function withNetlink<T>(netnsPath: string | null | undefined, fn: (nl: Netlink) => T): T {
  const nl = Netlink.open(netnsPath);
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}
