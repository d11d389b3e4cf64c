// knitd's CNI server: runs knit's plugins in-process for knit-client, so a CNI call costs a
// connect instead of a Node start (docs/design.md D4). One unix socket per network namespace,
// <dir>/<netns inode>.sock: the client finds the agent of the namespace it runs in, and the
// plugin runs here in that same namespace, so "the host" means the same thing on both paths.
// The socket directory is 0700 and the socket 0600: only root can connect, the trust boundary.
//
// Requests run concurrently on one event loop. dispatch() is pure (env and stdin in, stdout and
// exit code out); the plugins read the environment only through ctx.env, so each request sees the
// caller's CNI_*/KNIT_* variables, never knitd's own.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { dispatch, type Plugin } from '../cni/skel';
import type { Logger } from '../cni/log';
import {
  FrameError, Status, bodyLength, decodeRequest, encodeResponse, type CniRequest, type CniResponse,
} from './cni-protocol';

export const DEFAULT_SOCKET_DIR = '/run/knit/cni';

export interface CniServerOptions {
  /** Socket directory (created 0700). */
  dir?: string;
  /** The plugins served, by executable name (knit-bridge, knit-host-local ...). */
  plugins: ReadonlyMap<string, Plugin>;
  log: Logger;
  /** A client that has not sent its whole request within this time is dropped. */
  readTimeoutMs?: number;
}

/** The inode of the calling process's network namespace (the socket's name). */
export function netnsInode(): number {
  return fs.statSync('/proc/self/ns/net').ino;
}

export class CniServer {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly sockets = new Set<net.Socket>();
  private socketIno = 0;
  private closing = false;

  private constructor(
    readonly socketPath: string,
    private readonly server: net.Server,
    private readonly opts: CniServerOptions,
  ) {}

  /** Creates the directory and listens; refuses when another agent answers on the socket. */
  static async start(opts: CniServerOptions): Promise<CniServer> {
    const dir = opts.dir ?? DEFAULT_SOCKET_DIR;
    fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o755 });
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.statSync(dir);
    if (st.uid !== process.getuid?.()) throw new Error(`${dir} belongs to uid ${st.uid}, not to knitd's: refusing to serve from it`);
    fs.chmodSync(dir, 0o700); // whatever the umask or an older install made it
    const socketPath = path.join(dir, `${netnsInode()}.sock`);
    await removeStale(socketPath);
    const server = net.createServer({ allowHalfOpen: true });
    const self = new CniServer(socketPath, server, opts);
    server.on('connection', (s) => self.accept(s));
    server.maxConnections = 1024;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => { server.off('error', reject); resolve(); });
    });
    fs.chmodSync(socketPath, 0o600);
    self.socketIno = fs.statSync(socketPath).ino;
    return self;
  }

  /** Requests being served now. */
  get active(): number {
    return this.inFlight.size;
  }

  /**
   * Stops accepting (the socket file goes first, so new calls fall back to the Node path), lets
   * in-flight requests finish for up to graceMs, then drops what is left (those clients report
   * code 11, try again).
   */
  async stop(graceMs = 30_000): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    try {
      if (fs.statSync(this.socketPath).ino === this.socketIno) fs.unlinkSync(this.socketPath);
    } catch { /* already gone */ }
    // The directory's mere existence sends every plugin call through knit-client first: leave
    // none behind when no other agent (another netns) still serves from it. rmdir fails if not empty.
    try { fs.rmdirSync(path.dirname(this.socketPath)); } catch { /* other agents' sockets, or gone */ }
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs); });
    await Promise.race([Promise.all([...this.inFlight]), timeout]);
    clearTimeout(timer);
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private accept(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', (e) => this.opts.log.debug(`client connection: ${e.message}`));
    sock.setTimeout(this.opts.readTimeoutMs ?? 30_000, () => {
      this.opts.log.warn('dropping a client that did not send a whole request in time');
      sock.destroy();
    });
    let buf: Buffer = Buffer.alloc(0);
    let want = -1;
    const onData = (chunk: Buffer): void => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      try {
        if (want < 0 && buf.length >= 8) want = 8 + bodyLength(buf);
        if (want < 0 || buf.length < want) return;
        if (buf.length > want) throw new FrameError(`${buf.length - want} bytes after the request`);
        sock.off('data', onData);
        sock.setTimeout(0);
        this.track(this.serve(sock, decodeRequest(buf.subarray(8))));
      } catch (e) {
        // Garbage or a protocol this knitd does not speak: the client may fall back to Node.
        sock.off('data', onData);
        this.opts.log.warn(`rejecting a malformed request: ${(e as Error).message}`);
        reply(sock, { status: Status.NotServed, exitCode: 0, stdout: '', stderr: '' });
      }
    };
    sock.on('data', onData);
    // The client went away before its request was whole: nothing to answer.
    sock.on('end', () => { if (sock.listenerCount('data') > 0) sock.destroy(); });
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async serve(sock: net.Socket, req: CniRequest): Promise<void> {
    const plugin = this.opts.plugins.get(req.plugin);
    if (!plugin) {
      // E.g. a plugin installed after this knitd started: its own executable serves it.
      this.opts.log.info(`not serving unknown plugin ${JSON.stringify(req.plugin)}; the client runs it`);
      reply(sock, { status: Status.NotServed, exitCode: 0, stdout: '', stderr: '' });
      return;
    }
    const t0 = process.hrtime.bigint();
    let stderr = '';
    const out = await dispatch(plugin, req.env, req.stdin, { stderr: (line) => { stderr += line; } });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (this.opts.log.enabled('debug')) {
      this.opts.log.debug('served', {
        verb: req.env.CNI_COMMAND, plugin: req.plugin, containerId: req.env.CNI_CONTAINERID, ifName: req.env.CNI_IFNAME,
        exitCode: out.exitCode, ms: Math.round(ms * 100) / 100,
      });
    }
    reply(sock, { status: Status.Answered, exitCode: out.exitCode, stdout: out.stdout, stderr });
  }
}

function reply(sock: net.Socket, r: CniResponse): void {
  if (!sock.destroyed) sock.end(encodeResponse(r));
}

/** Removes a socket file nobody answers on (a killed knitd's); throws when an agent answers. */
async function removeStale(file: string): Promise<void> {
  let st: fs.Stats;
  try { st = fs.lstatSync(file); } catch { return; }
  if (!st.isSocket()) throw new Error(`${file} exists and is not a socket: remove it by hand`);
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(file);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another knitd already serves this network namespace on ${file}`);
  fs.unlinkSync(file);
}
