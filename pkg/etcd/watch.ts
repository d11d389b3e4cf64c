// An etcd watch over the JSON gateway: one streaming POST /v3/watch whose response is a sequence
// of JSON objects (one per line), each carrying events. Node's http/https only. Any failure
// (endpoint down, stream ended, revision compacted) ends the watch with onError: the caller
// re-lists and watches again from the new revision, which also covers events missed meanwhile.
import type * as httpT from 'node:http';
import * as fs from 'node:fs';
import type { EtcdClient, EtcdClientOptions, KeyValue } from './client';
import { prefixEnd } from './client';
import { b64, raw } from './lease';

export interface WatchEvent {
  type: 'put' | 'del';
  kv: KeyValue;
}

export interface EtcdWatchOptions {
  /** The client's options (endpoints, TLS, credentials). */
  conn: EtcdClientOptions;
  /** The client, for authentication when credentials are set. */
  client: EtcdClient;
  prefix: string;
  /** Events after this revision are delivered (start_revision = revision + 1). */
  revision: number;
  onEvents(events: WatchEvent[], revision: number): void;
  onError(err: Error): void;
}

const num = (v: unknown): number => (v === undefined || v === null ? 0 : Number(v));

function decKv(kv: Record<string, unknown>): KeyValue {
  return {
    key: Buffer.from(String(kv.key ?? ''), 'base64'),
    value: Buffer.from(String(kv.value ?? ''), 'base64'),
    createRevision: num(kv.create_revision), modRevision: num(kv.mod_revision), version: num(kv.version),
  };
}

export class EtcdWatch {
  private req: httpT.ClientRequest | null = null;
  private closed = false;
  private failed = false;

  constructor(private readonly o: EtcdWatchOptions) {
    void this.start();
  }

  close(): void {
    this.closed = true;
    this.req?.destroy();
    this.req = null;
  }

  private fail(err: Error): void {
    if (this.closed || this.failed) return;
    this.failed = true;
    this.req?.destroy();
    this.req = null;
    this.o.onError(err);
  }

  private async start(): Promise<void> {
    let token: string | undefined;
    if (this.o.conn.username) {
      try {
        const r = await raw(this.o.client)('/v3/auth/authenticate', { name: this.o.conn.username, password: this.o.conn.password ?? '' });
        token = String(r.token ?? '');
      } catch (e) {
        return this.fail(e as Error);
      }
    }
    if (this.closed) return;
    const ep = new URL(this.o.conn.endpoints[Math.floor(Math.random() * this.o.conn.endpoints.length)]!);
    const https = ep.protocol === 'https:';
    const mod = https ? (require('node:https') as typeof import('node:https')) : (require('node:http') as typeof httpT);
    const tls: Record<string, Buffer> = {};
    try {
      for (const k of ['ca', 'cert', 'key'] as const) { const f = this.o.conn.tls?.[k]; if (f) tls[k] = fs.readFileSync(f); }
    } catch (e) {
      return this.fail(e as Error);
    }
    const body = JSON.stringify({ create_request: { key: b64(this.o.prefix), range_end: b64(prefixEnd(this.o.prefix)), start_revision: String(this.o.revision + 1) } });
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    if (token) headers.authorization = token;
    const req = (this.req = mod.request({
      protocol: ep.protocol, hostname: ep.hostname.replace(/^\[|\]$/g, ''), port: ep.port || (https ? 443 : 80),
      method: 'POST', path: `${ep.pathname.replace(/\/$/, '')}/v3/watch`, headers, ...(https ? tls : {}),
    }, (res) => {
      if (res.statusCode !== 200) { res.resume(); return this.fail(new Error(`etcd watch: HTTP ${res.statusCode}`)); }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) this.handle(line);
        }
      });
      res.on('end', () => this.fail(new Error('etcd watch: stream ended')));
      res.on('error', (e) => this.fail(e));
    }));
    req.on('error', (e) => this.fail(e));
    req.end(body);
  }

  private handle(line: string): void {
    let msg: Record<string, any>;
    try { msg = JSON.parse(line); } catch { return; }
    if (msg.error) return this.fail(new Error(`etcd watch: ${msg.error.message ?? JSON.stringify(msg.error)}`));
    const r = msg.result ?? {};
    if (r.canceled) return this.fail(new Error(`etcd watch canceled${r.compact_revision ? ` (revision compacted to ${r.compact_revision})` : ''}: ${r.cancel_reason ?? ''}`));
    const events = ((r.events ?? []) as Array<Record<string, any>>).map((e): WatchEvent => ({ type: e.type === 'DELETE' ? 'del' : 'put', kv: decKv(e.kv ?? {}) }));
    if (events.length) this.o.onEvents(events, num(r.header?.revision));
  }
}
