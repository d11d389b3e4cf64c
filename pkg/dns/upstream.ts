// Forwarding to the node's own resolvers (the nameserver lines of its /etc/resolv.conf, reread
// when the file changes): names that are not knit's go where the node's own lookups go. knitd
// runs in the node's network namespace, so a loopback resolver (systemd-resolved's 127.0.0.53)
// works, which a container could not reach itself.
//
// One fresh UDP socket per forwarded query (a random source port for each, so an off-path
// attacker has the query id and the port to guess), each upstream in turn with a timeout; TCP
// queries go over TCP. The number of queries in flight is bounded: past it, queries are dropped.
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { familyOf } from '../ip/ip';

export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const ip = m[1]!.replace(/%.*$/, ''); // a scoped IPv6 address: the zone is dropped (knitd has no interface to give it)
    if (familyOf(ip) && !out.includes(ip)) out.push(ip);
  }
  return out;
}

export interface ForwarderOptions {
  resolvConf: string;
  /** Addresses never used as upstream (knit's own gateways: a loop). */
  exclude?: () => ReadonlySet<string>;
  timeoutMs?: number;
  maxInFlight?: number;
  port?: number;
}

export class Forwarder {
  inFlight = 0;
  private servers: string[] = [];
  private mtimeMs = -1;
  private checked = 0;

  constructor(private readonly o: ForwarderOptions) {}

  /** The upstream resolvers now (the file is looked at again at most once a second). */
  upstreams(): string[] {
    const now = Date.now();
    if (now - this.checked >= 1000) {
      this.checked = now;
      try {
        const st = fs.statSync(this.o.resolvConf);
        if (st.mtimeMs !== this.mtimeMs) { this.mtimeMs = st.mtimeMs; this.servers = parseResolvConf(fs.readFileSync(this.o.resolvConf, 'utf8')); }
      } catch {
        this.mtimeMs = -1;
        this.servers = [];
      }
    }
    const ex = this.o.exclude?.() ?? new Set<string>();
    return this.servers.filter((s) => !ex.has(s));
  }

  /** The upstream's answer to `query`, or null (none answered in time, or too many in flight). */
  async forward(query: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | null> {
    const ups = this.upstreams();
    if (!ups.length || this.inFlight >= (this.o.maxInFlight ?? 1024)) return null;
    this.inFlight++;
    try {
      for (const up of ups) {
        const r = await (transport === 'udp' ? this.udp(up, query) : this.tcp(up, query)).catch(() => null);
        if (r) return r;
      }
      return null;
    } finally {
      this.inFlight--;
    }
  }

  private udp(server: string, query: Buffer): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const sock = dgram.createSocket(familyOf(server) === 6 ? 'udp6' : 'udp4');
      const id = query.readUInt16BE(0);
      let finished = false;
      const done = (r: Buffer | null): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        try { sock.close(); } catch { /* closed */ }
        resolve(r);
      };
      const timer = setTimeout(() => done(null), this.o.timeoutMs ?? 2000);
      sock.on('error', () => done(null));
      sock.on('message', (msg, rinfo) => {
        // Only the server asked, with the query's id, as a response: anything else is ignored.
        if (rinfo.address !== server || msg.length < 12 || msg.readUInt16BE(0) !== id || !(msg.readUInt16BE(2) & 0x8000)) return;
        done(msg);
      });
      sock.send(query, this.o.port ?? 53, server);
    });
  }

  private tcp(server: string, query: Buffer): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const sock = net.connect({ host: server, port: this.o.port ?? 53 });
      let buf = Buffer.alloc(0);
      const done = (r: Buffer | null): void => { clearTimeout(timer); sock.destroy(); resolve(r); };
      const timer = setTimeout(() => done(null), this.o.timeoutMs ?? 2000);
      sock.on('error', () => done(null));
      sock.on('connect', () => { const len = Buffer.alloc(2); len.writeUInt16BE(query.length); sock.write(Buffer.concat([len, query])); });
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      });
      sock.on('end', () => done(null));
    });
  }
}
