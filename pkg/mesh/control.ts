// knitctl's way into a mesh-mode knitd: a root-only unix socket <run-dir>/mesh.sock, one JSON
// request per connection and one JSON answer ({ok: true, result} or {ok: false, error}). In mesh
// mode there is no datastore to talk to but the local knitd (docs/mesh.md).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { SpecError } from '../network/spec';

export const CONTROL_SOCKET = 'mesh.sock';
const MAX_REQUEST = 1 << 20;

export type Handler = (req: Record<string, unknown>) => Promise<unknown>;

export function controlPath(runDir: string): string { return path.join(runDir, CONTROL_SOCKET); }

/** Serves requests on <runDir>/mesh.sock (mode 0600) until closed. */
export async function serveControl(runDir: string, handle: Handler): Promise<net.Server> {
  fs.mkdirSync(runDir, { recursive: true });
  const file = controlPath(runDir);
  fs.rmSync(file, { force: true });
  const server = net.createServer((s) => {
    let buf = '';
    s.setEncoding('utf8');
    s.on('error', () => undefined);
    s.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) { s.destroy(); return; }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req: Record<string, unknown>;
      try { req = JSON.parse(buf.slice(0, nl)); } catch { s.end(`${JSON.stringify({ ok: false, error: 'request is not JSON' })}\n`); return; }
      handle(req).then(
        (result) => s.end(`${JSON.stringify({ ok: true, result })}\n`),
        // The error's class travels too: knitctl treats a SpecError (a bad request) as on etcd.
        (e: Error & { code?: unknown }) => s.end(`${JSON.stringify({ ok: false, error: e.message, ...(e.name !== 'Error' ? { kind: e.name } : {}), ...(typeof e.code === 'number' ? { code: e.code } : {}) })}\n`));
    });
  });
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(file, () => resolve()); });
  } finally { process.umask(old); }
  fs.chmodSync(file, 0o600);
  return server;
}

/** Whether a mesh-mode knitd serves <runDir>. */
export function hasControl(runDir: string): boolean {
  try { return fs.statSync(controlPath(runDir)).isSocket(); } catch { return false; }
}

/** One request to the local knitd; its error message when it answers one. */
export function controlCall<T = unknown>(runDir: string, req: Record<string, unknown>, timeoutMs = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const file = controlPath(runDir);
    const s = net.connect(file);
    let buf = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error(`knitd at ${file} did not answer within ${timeoutMs} ms`)); }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(`${JSON.stringify(req)}\n`));
    s.on('data', (d: string) => { buf += d; });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      reject(new Error(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? `no mesh-mode knitd at ${file} (knitd --datastore mesh --run-dir ${runDir})` : `${file}: ${e.message}`));
    });
    s.on('end', () => {
      clearTimeout(t);
      try {
        const r = JSON.parse(buf) as { ok: boolean; result?: T; error?: string; kind?: string; code?: number };
        if (r.ok) { resolve(r.result as T); return; }
        if (r.kind === 'SpecError') { reject(new SpecError(r.error ?? 'knitd failed')); return; }
        const err = Object.assign(new Error(r.error ?? 'knitd failed'), typeof r.code === 'number' ? { code: r.code } : {});
        if (r.kind) err.name = r.kind;
        reject(err);
      } catch { reject(new Error(`knitd at ${file} answered no JSON`)); }
    });
  });
}
