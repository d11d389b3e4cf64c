// A small etcd v3 client over etcd's JSON gateway (POST /v3/kv/range, /v3/kv/txn,
// /v3/kv/deleterange, /v3/auth/authenticate; keys and values base64) and Node's own http/https:
// no gRPC stack and no npm client on the plugin path (docs/design.md D8; node:http costs
// ~2 ms of start-up over node:net, an npm etcd client with gRPC tens of ms).
//
// Every request has one deadline, timeoutMs from its start, across all endpoints: an endpoint
// that refuses or resets moves on to the next at once, one that does not answer gets its share
// of the time left, and when the deadline passes the request fails with kind 'unavailable'
// (CNI code 11 for the plugins). TLS (ca/cert/key files) and username/password (a token from
// /v3/auth/authenticate in the Authorization header, renewed once when etcd forgets it) are
// supported. Passwords and tokens never appear in errors or logs.
import type * as httpT from 'node:http';
import type * as fsT from 'node:fs';

export interface EtcdTls {
  /** PEM file paths. */
  ca?: string;
  cert?: string;
  key?: string;
}

export interface EtcdClientOptions {
  /** http:// or https:// URLs of the members' client ports. */
  endpoints: string[];
  /** Deadline of each request, across every endpoint it tries (default 5000). */
  timeoutMs?: number;
  tls?: EtcdTls;
  username?: string;
  password?: string;
}

export type EtcdErrorKind =
  /** No endpoint answered in time, or every one was unavailable (no leader ...): try later. */
  | 'unavailable'
  /** Authentication failed (bad user or password). */
  | 'auth'
  /** etcd answered with an error (permission denied, bad request ...). */
  | 'refused'
  /** The client's own configuration cannot be used (a TLS file that cannot be read): fix the config. */
  | 'config';

export class EtcdError extends Error {
  constructor(readonly kind: EtcdErrorKind, msg: string, readonly grpcCode?: number) {
    super(msg);
    this.name = 'EtcdError';
  }
}

export interface KeyValue {
  key: Buffer;
  value: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
}

export interface RangeResult {
  revision: number;
  kvs: KeyValue[];
  count: number;
  more: boolean;
}

export interface RangeRequest {
  key: Buffer | string;
  rangeEnd?: Buffer | string;
  limit?: number;
  keysOnly?: boolean;
  countOnly?: boolean;
  /** Served by the member itself without consensus; may be slightly stale. */
  serializable?: boolean;
}

export type Target = 'CREATE' | 'MOD' | 'VALUE' | 'VERSION';
export type CmpResult = 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';

export interface Compare {
  key: Buffer | string;
  rangeEnd?: Buffer | string;
  target: Target;
  result: CmpResult;
  /** Revision or version for CREATE/MOD/VERSION; bytes for VALUE. */
  value: number | Buffer | string;
}

export type Op =
  | { put: { key: Buffer | string; value: Buffer | string } }
  | { del: { key: Buffer | string; rangeEnd?: Buffer | string } }
  | { range: RangeRequest }
  | { txn: TxnRequest };

export interface TxnRequest {
  compare: Compare[];
  success: Op[];
  failure?: Op[];
}

export type OpResult =
  | { kind: 'range'; range: RangeResult }
  | { kind: 'put' }
  | { kind: 'del'; deleted: number }
  | { kind: 'txn'; txn: TxnResult };

export interface TxnResult {
  revision: number;
  succeeded: boolean;
  responses: OpResult[];
}

// ---- helpers for callers -----------------------------------------------------------------

export const cmp = {
  created: (key: Buffer | string, rev: number): Compare => ({ key, target: 'CREATE', result: 'EQUAL', value: rev }),
  /** The key does not exist (or, with rangeEnd, no key of [key, rangeEnd) exists). */
  absent: (key: Buffer | string, rangeEnd?: Buffer | string): Compare => ({ key, ...(rangeEnd !== undefined ? { rangeEnd } : {}), target: 'CREATE', result: 'EQUAL', value: 0 }),
  modified: (key: Buffer | string, rev: number): Compare => ({ key, target: 'MOD', result: 'EQUAL', value: rev }),
  value: (key: Buffer | string, value: Buffer | string): Compare => ({ key, target: 'VALUE', result: 'EQUAL', value }),
};

/** The key just after every key starting with `prefix` (etcd's prefix range end). */
export function prefixEnd(prefix: Buffer | string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const out = Buffer.from(b.subarray(0, i + 1));
      out[i]!++;
      return out;
    }
  }
  return Buffer.from([0]); // all 0xff: to the end of the key space
}

// ---- wire encoding -----------------------------------------------------------------------

const b64 = (v: Buffer | string): string => Buffer.from(v).toString('base64');

function encRange(r: RangeRequest): Record<string, unknown> {
  const o: Record<string, unknown> = { key: b64(r.key) };
  if (r.rangeEnd !== undefined) o.range_end = b64(r.rangeEnd);
  if (r.limit) o.limit = String(r.limit);
  if (r.keysOnly) o.keys_only = true;
  if (r.countOnly) o.count_only = true;
  if (r.serializable) o.serializable = true;
  return o;
}

function encCompare(c: Compare): Record<string, unknown> {
  const o: Record<string, unknown> = { key: b64(c.key), target: c.target, result: c.result };
  if (c.rangeEnd !== undefined) o.range_end = b64(c.rangeEnd);
  switch (c.target) {
    case 'CREATE': o.create_revision = String(c.value); break;
    case 'MOD': o.mod_revision = String(c.value); break;
    case 'VERSION': o.version = String(c.value); break;
    case 'VALUE': o.value = b64(c.value as Buffer | string); break;
  }
  return o;
}

function encOp(op: Op): Record<string, unknown> {
  if ('put' in op) return { request_put: { key: b64(op.put.key), value: b64(op.put.value) } };
  if ('del' in op) return { request_delete_range: { key: b64(op.del.key), ...(op.del.rangeEnd !== undefined ? { range_end: b64(op.del.rangeEnd) } : {}) } };
  if ('range' in op) return { request_range: encRange(op.range) };
  return { request_txn: encTxn(op.txn) };
}

function encTxn(t: TxnRequest): Record<string, unknown> {
  return { compare: t.compare.map(encCompare), success: t.success.map(encOp), failure: (t.failure ?? []).map(encOp) };
}

const num = (v: unknown): number => (v === undefined || v === null ? 0 : Number(v));

function decKv(kv: Record<string, unknown>): KeyValue {
  return {
    key: Buffer.from(String(kv.key ?? ''), 'base64'),
    value: Buffer.from(String(kv.value ?? ''), 'base64'),
    createRevision: num(kv.create_revision),
    modRevision: num(kv.mod_revision),
    version: num(kv.version),
  };
}

function decRange(r: Record<string, any>): RangeResult {
  return { revision: num(r.header?.revision), kvs: ((r.kvs ?? []) as Array<Record<string, unknown>>).map(decKv), count: num(r.count), more: !!r.more };
}

function decTxn(r: Record<string, any>): TxnResult {
  return {
    revision: num(r.header?.revision),
    succeeded: !!r.succeeded,
    responses: ((r.responses ?? []) as Array<Record<string, any>>).map((x): OpResult => {
      if (x.response_range) return { kind: 'range', range: decRange(x.response_range) };
      if (x.response_put) return { kind: 'put' };
      if (x.response_delete_range) return { kind: 'del', deleted: num(x.response_delete_range.deleted) };
      if (x.response_txn) return { kind: 'txn', txn: decTxn(x.response_txn) };
      // A nested txn that took an empty branch is encoded as {} by the gateway.
      return { kind: 'txn', txn: { revision: 0, succeeded: false, responses: [] } };
    }),
  };
}

// ---- transport ---------------------------------------------------------------------------

/** etcd errors worth another endpoint or another try (gRPC Unavailable, DeadlineExceeded ...). */
const RETRY_MSG = /leader changed|no leader|request timed out|too many requests|not capable|server is stopping|raft: stopped|timed out waiting for read index|unhealthy cluster/i;
const RETRY_GRPC = new Set([4, 8, 14]);
/** etcd forgot our token (restart, expiry): authenticate again. */
const TOKEN_MSG = /invalid auth token|user name is empty|auth: revision in header is old/i;

interface Endpoint {
  url: URL;
  https: boolean;
}

class Attempt extends Error {
  constructor(msg: string, readonly retry: boolean, readonly status?: number, readonly body?: Record<string, any>) {
    super(msg);
  }
}

export class EtcdClient {
  readonly timeoutMs: number;
  private readonly eps: Endpoint[];
  private current: number;
  private agentHttp: httpT.Agent | null = null;
  private agentHttps: httpT.Agent | null = null;
  private token: string | null = null;
  private authing: Promise<void> | null = null;
  private tlsFiles: { ca?: Buffer; cert?: Buffer; key?: Buffer } | null = null;

  constructor(private readonly opts: EtcdClientOptions) {
    if (!opts.endpoints.length) throw new EtcdError('refused', 'etcd: no endpoints');
    this.eps = opts.endpoints.map((e) => {
      const url = new URL(e);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EtcdError('refused', `etcd endpoint ${e}: http:// or https:// expected`);
      return { url, https: url.protocol === 'https:' };
    });
    this.timeoutMs = opts.timeoutMs ?? 5000;
    // Spread clients over the members; the leader does the writes anyway.
    this.current = process.pid % this.eps.length;
  }

  /** The endpoint the next request goes to first (the last one that answered). */
  get endpoint(): string {
    return this.eps[this.current]!.url.origin;
  }

  async range(r: RangeRequest): Promise<RangeResult> {
    return decRange(await this.call('/v3/kv/range', encRange(r)));
  }

  async get(key: Buffer | string, serializable = false): Promise<KeyValue | null> {
    return (await this.range({ key, serializable })).kvs[0] ?? null;
  }

  async prefix(prefix: Buffer | string, opts: { keysOnly?: boolean; serializable?: boolean } = {}): Promise<KeyValue[]> {
    return (await this.range({ key: prefix, rangeEnd: prefixEnd(prefix), ...opts })).kvs;
  }

  async txn(t: TxnRequest): Promise<TxnResult> {
    return decTxn(await this.call('/v3/kv/txn', encTxn(t)));
  }

  async put(key: Buffer | string, value: Buffer | string): Promise<void> {
    await this.call('/v3/kv/put', { key: b64(key), value: b64(value) });
  }

  async delete(key: Buffer | string, rangeEnd?: Buffer | string): Promise<number> {
    const r = await this.call('/v3/kv/deleterange', { key: b64(key), ...(rangeEnd !== undefined ? { range_end: b64(rangeEnd) } : {}) });
    return num(r.deleted);
  }

  /** Closes kept-alive connections so the process can exit. */
  close(): void {
    this.agentHttp?.destroy();
    this.agentHttps?.destroy();
    this.agentHttp = this.agentHttps = null;
  }

  private loadTls(): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
    if (this.tlsFiles) return this.tlsFiles;
    const fs = require('node:fs') as typeof fsT;
    const t = this.opts.tls ?? {};
    const out: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
    for (const k of ['ca', 'cert', 'key'] as const) {
      const file = t[k];
      if (!file) continue;
      try {
        out[k] = fs.readFileSync(file);
      } catch (e) {
        const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
        throw new EtcdError('config', `tls.${k} ${JSON.stringify(file)} cannot be read (${why}): a readable PEM file`);
      }
    }
    return (this.tlsFiles = out);
  }

  private agent(ep: Endpoint): httpT.Agent {
    if (ep.https) {
      if (!this.agentHttps) {
        const https = require('node:https') as typeof import('node:https');
        this.agentHttps = new https.Agent({ keepAlive: true, maxSockets: 64, ...this.loadTls() });
      }
      return this.agentHttps;
    }
    if (!this.agentHttp) {
      const http = require('node:http') as typeof httpT;
      this.agentHttp = new http.Agent({ keepAlive: true, maxSockets: 64 });
    }
    return this.agentHttp;
  }

  /**
   * Any v3 gateway call (e.g. /v3/lease/grant) with the client's failover, deadline, TLS and
   * auth token: for the parts of the API this class has no method for.
   */
  request(path: string, body: Record<string, unknown>): Promise<Record<string, any>> {
    return this.call(path, body);
  }

  /** One request with failover across endpoints until the deadline. */
  private async call(path: string, body: Record<string, unknown>, deadline = Date.now() + this.timeoutMs, authRetried = false): Promise<Record<string, any>> {
    if (this.opts.username && !this.token && path !== '/v3/auth/authenticate') await this.authenticate(deadline);
    const data = JSON.stringify(body);
    const n = this.eps.length;
    let last = '';
    for (let round = 0; ; round++) {
      for (let k = 0; k < n; k++) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const i = this.current;
        // An endpoint that hangs gets its share of the time left, so the others still get a turn.
        const slice = Math.min(left, Math.max(Math.ceil(left / (n - k)), 300));
        try {
          const res = await this.post(this.eps[i]!, path, data, slice);
          return res;
        } catch (e) {
          if (!(e instanceof Attempt)) throw e;
          const msg = String(e.body?.message ?? e.body?.error ?? '');
          if (!authRetried && this.opts.username && path !== '/v3/auth/authenticate' && TOKEN_MSG.test(msg)) {
            this.token = null;
            return this.call(path, body, deadline, true);
          }
          if (!e.retry) throw this.refusal(path, e);
          last = `${this.eps[i]!.url.origin}: ${e.message}`;
          this.current = (i + 1) % n;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise((r) => setTimeout(r, Math.min(left, 50 * (round + 1))));
    }
    throw new EtcdError('unavailable', `etcd unavailable: no endpoint of ${this.eps.map((e) => e.url.origin).join(', ')} answered ${path} within ${this.timeoutMs} ms (last: ${last || 'no attempt'})`);
  }

  private refusal(path: string, e: Attempt): EtcdError {
    const msg = String(e.body?.message ?? e.body?.error ?? e.message);
    const code = e.body?.code === undefined ? undefined : Number(e.body.code);
    if (msg.startsWith('TLS: ')) return new EtcdError('refused', `etcd ${this.eps.map((x) => x.url.origin).join(', ')}: ${msg}`, code);
    if (/authentication failed|invalid user ID or password|user name not found|password/i.test(msg) || path === '/v3/auth/authenticate') {
      return new EtcdError('auth', `etcd authentication failed for user ${JSON.stringify(this.opts.username ?? '')}: ${msg.replace(/etcdserver: /, '')}`, code);
    }
    return new EtcdError('refused', `etcd refused ${path}: ${msg}`, code);
  }

  private authenticate(deadline: number): Promise<void> {
    if (!this.authing) {
      this.authing = (async () => {
        const r = await this.call('/v3/auth/authenticate', { name: this.opts.username, password: this.opts.password ?? '' }, deadline);
        if (typeof r.token !== 'string' || !r.token) throw new EtcdError('auth', 'etcd authentication returned no token');
        this.token = r.token;
      })().finally(() => { this.authing = null; });
    }
    return this.authing;
  }

  private post(ep: Endpoint, path: string, data: string, timeoutMs: number): Promise<Record<string, any>> {
    const mod = ep.https ? (require('node:https') as typeof import('node:https')) : (require('node:http') as typeof httpT);
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err: Attempt | null, v?: Record<string, any>): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) reject(err); else resolve(v!);
      };
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) };
      if (this.token && path !== '/v3/auth/authenticate') headers.authorization = this.token;
      const req = mod.request({
        protocol: ep.url.protocol, hostname: ep.url.hostname.replace(/^\[|\]$/g, ''), port: ep.url.port || (ep.https ? 443 : 80),
        method: 'POST', path: `${ep.url.pathname.replace(/\/$/, '')}${path}`, headers, agent: this.agent(ep),
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('error', (e) => finish(new Attempt(e.message, true)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let body: Record<string, any> = {};
          try { body = text ? JSON.parse(text) : {}; } catch { /* not JSON */ }
          const status = res.statusCode ?? 0;
          if (status === 200 && body.error === undefined) return finish(null, body);
          const msg = String(body.message ?? body.error ?? `HTTP ${status} ${text.slice(0, 200)}`);
          const code = Number(body.code);
          const retry = status === 503 || status === 502 || status === 504 || RETRY_GRPC.has(code) || RETRY_MSG.test(msg);
          finish(new Attempt(msg, retry, status, body));
        });
      });
      const timer = setTimeout(() => {
        req.destroy();
        finish(new Attempt(`no answer within ${timeoutMs} ms`, true));
      }, timeoutMs);
      req.on('error', (e: NodeJS.ErrnoException) => {
        // TLS verification failures will not heal by retrying; connection errors may.
        const tlsBad = /certificate|self.signed|unable to verify|wrong version number|handshake/i.test(`${e.code} ${e.message}`);
        finish(new Attempt(`${e.code ?? ''} ${e.message}`.trim(), !tlsBad, undefined, tlsBad ? { message: `TLS: ${e.message}` } : undefined));
      });
      req.end(data);
    });
  }
}
