// Verb dispatch: env + stdin in, exactly one JSON document (result or error) out. `dispatch` is pure
// (no process globals) so tests drive it in-process; `main` binds it to the real process.
import { CniError, Code, asCniError, show } from './errors';
import { parseEnv, type Env } from './env';
import { confVersion, decodeConfObject, validateConf, versionRequest } from './conf';
import { parseCniArgs, type CniArgs } from './args';
import { convertResult } from './result';
import { LATEST_VERSION, isSupportedVersion, versionInfo } from './version';
import { createLogger, nullLogger, type Logger } from './log';
import type { Attachment, Command, NetConf, Result } from './types';

export interface Context {
  command: Command;
  /** '' for STATUS and GC. */
  containerId: string;
  /** '' when not given (DEL may omit it; STATUS and GC never have it). */
  netns: string;
  ifName: string;
  /** Parsed CNI_ARGS (on DEL parsed leniently: bad pairs are logged and dropped). */
  args: CniArgs;
  /** CNI_PATH directories. */
  path: string[];
  /** The environment the plugin got: delegates receive the same (SPEC.md section 4). */
  env: Env;
  /** Validated config; prevResult is in 1.x form. */
  conf: NetConf;
  /** stdin as received: what delegated plugins are given. */
  rawConf: Buffer;
  log: Logger;
  /** GC: the attachments that are still valid (`cni.dev/valid-attachments`); [] for other verbs. */
  validAttachments: Attachment[];
}

export interface Plugin {
  name: string;
  add(ctx: Context): Promise<Result>;
  del(ctx: Context): Promise<void>;
  check(ctx: Context): Promise<void>;
  status(ctx: Context): Promise<void>;
  gc(ctx: Context): Promise<void>;
  /** CNI_ARGS keys this plugin understands besides the common ones (IP, MAC, K8S_POD_*). */
  knownArgs?: readonly string[];
  /**
   * Skip the ADD/CHECK check that CNI_NETNS exists and is not the plugin's own namespace
   * (for plugins that never enter the netns). CNI_NETNS_OVERRIDE=1 skips it too, as in the reference.
   */
  skipNetnsCheck?: boolean;
  /** One line printed on stderr when run by hand without CNI_COMMAND, e.g. "knit-bridge v0.1.0". */
  about?: string;
}

export interface DispatchOutput {
  stdout: string;
  exitCode: number;
}

export interface DispatchOptions {
  /** Use this logger instead of one made from env and the config. */
  log?: Logger;
  /** Where the request's log text goes instead of process.stderr (knitd returns it to the caller). */
  stderr?: (line: string) => void;
}

/** Runs one CNI request. Never throws: every failure becomes an error JSON and exit code 1. */
export async function dispatch(plugin: Plugin, env: Env, stdin: Buffer, opts: DispatchOptions = {}): Promise<DispatchOutput> {
  let version = LATEST_VERSION;
  let log = opts.log ?? nullLogger;
  try {
    const e = parseEnv(env);
    if (e.command === 'VERSION') {
      // Nearly free: only cniVersion is looked at, nothing else validated.
      const info = versionInfo(versionRequest(stdin));
      return { stdout: JSON.stringify(info), exitCode: 0 };
    }
    const raw = decodeConfObject(stdin);
    if (isSupportedVersion(raw.cniVersion)) version = raw.cniVersion;
    confVersion(raw, e.command);
    const conf = validateConf(raw, version);
    if (!opts.log) {
      log = createLogger({
        env,
        ...(opts.stderr ? { stderr: opts.stderr } : {}),
        file: env.KNIT_LOG_FILE || conf.logFile || undefined,
        fields: { plugin: plugin.name, cmd: e.command, ...(e.containerId ? { containerId: e.containerId, ifName: e.ifName } : {}), net: conf.name },
      });
    }
    if (log.enabled('debug')) log.debug('request', { conf, netns: e.netns, args: e.args, path: e.path });

    let validAttachments: Attachment[] = [];
    if (e.command === 'GC') {
      const va = conf['cni.dev/valid-attachments'];
      if (!va) {
        throw new CniError(Code.InvalidConfig, 'cni.dev/valid-attachments is required for GC: the list of {containerID, ifname} still in use (may be empty)');
      }
      validAttachments = va;
    }
    const attach = e.command === 'ADD' || e.command === 'DEL' || e.command === 'CHECK';
    const args = attach
      ? parseCniArgs(e.args, { known: plugin.knownArgs, lenient: e.command === 'DEL', onWarning: (m) => log.warn(`ignoring bad CNI_ARGS on DEL: ${m}`) })
      : parseCniArgs('');
    if ((e.command === 'ADD' || e.command === 'CHECK') && !plugin.skipNetnsCheck && !/^(1|true)$/i.test(env.CNI_NETNS_OVERRIDE ?? '')) {
      checkNetns(e.netns);
    }
    const ctx: Context = {
      command: e.command, containerId: e.containerId, netns: e.netns, ifName: e.ifName,
      args, path: e.path, env, conf, rawConf: stdin, log, validAttachments,
    };
    switch (e.command) {
      case 'ADD': {
        const result = await plugin.add(ctx);
        if (typeof result !== 'object' || result === null) {
          throw new CniError(Code.IOFailure, `plugin ${plugin.name} returned no result from ADD`);
        }
        return { stdout: JSON.stringify(convertResult(result, version)), exitCode: 0 };
      }
      case 'DEL': await plugin.del(ctx); break;
      case 'CHECK': await plugin.check(ctx); break;
      case 'STATUS': await plugin.status(ctx); break;
      case 'GC': await plugin.gc(ctx); break;
    }
    return { stdout: '', exitCode: 0 };
  } catch (err) {
    const ce = asCniError(err);
    if (!(err instanceof CniError) && ce.code !== Code.KernelRefused) {
      // The stack belongs on stderr (when logging permits), never in the protocol output.
      log.error(`unexpected failure: ${ce.message}`, { stack: err instanceof Error ? err.stack : String(err) });
    } else {
      // The runtime gets the error itself; the log keeps a record (file level info by default).
      log.info(`failed: ${ce.message}`, { code: ce.code, details: ce.details });
    }
    return { stdout: JSON.stringify(ce.toJSON(version)), exitCode: 1 };
  }
}

/** ADD/CHECK: CNI_NETNS must exist and must not be the plugin's own namespace (the reference refuses that too). */
function checkNetns(netns: string): void {
  // Lazy: only the attachment verbs pay for fs.
  const { statSync } = require('node:fs') as typeof import('node:fs');
  let st;
  try {
    st = statSync(netns);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new CniError(Code.InvalidEnvironment, `invalid CNI_NETNS ${show(netns)}: ${code === 'ENOENT' ? 'no such file' : code}; the path of the container's network namespace (e.g. /run/netns/NAME or /proc/PID/ns/net)`);
  }
  let own;
  try { own = statSync('/proc/self/ns/net'); } catch { return; }
  if (st.dev === own.dev && st.ino === own.ino) {
    throw new CniError(Code.InvalidEnvironment, `invalid CNI_NETNS ${show(netns)}: it is the plugin's own network namespace; the container's namespace is expected (CNI_NETNS_OVERRIDE=1 allows this)`);
  }
}

/** Reads all of stdin synchronously (cheapest at start-up); empty for a terminal or a closed stdin. */
export function readStdinSync(): Buffer {
  const { readFileSync } = require('node:fs') as typeof import('node:fs');
  if (stdinIsTerminal()) return Buffer.alloc(0);
  try {
    return readFileSync(0);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN') return readFdLoop();
    if (code === 'EOF' || code === 'EBADF' || code === 'ENXIO') return Buffer.alloc(0);
    throw new CniError(Code.IOFailure, `failed to read network config from stdin: ${(e as Error).message}`);
  }
}

/**
 * fstat, not tty.isatty or process.stdin: loading node:tty pulls in net and stream (~5 ms of
 * start-up), and creating process.stdin would switch a piped fd 0 to non-blocking.
 * A character device that is not /dev/null is taken for a terminal.
 */
function stdinIsTerminal(): boolean {
  const { fstatSync } = require('node:fs') as typeof import('node:fs');
  try {
    const st = fstatSync(0);
    return st.isCharacterDevice() && st.rdev !== 0x103; // 1:3 is /dev/null
  } catch {
    return false;
  }
}

/** One synchronous write: process.stdout would construct a stream (2-3 ms) for a single line. */
function writeOut(fd: 1 | 2, text: string): void {
  const { writeSync } = require('node:fs') as typeof import('node:fs');
  const buf = Buffer.from(text);
  for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off);
}

/** Non-blocking stdin (rare): poll readSync until EOF. */
function readFdLoop(): Buffer {
  const { readSync } = require('node:fs') as typeof import('node:fs');
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n: number;
    try { n = readSync(0, buf, 0, buf.length, null); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2); continue; }
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks);
}

/** The executable's entry point: stdin and env in, one write to stdout, exit code 0 or 1. */
export function main(plugin: Plugin): void {
  let stdin: Buffer;
  const env = process.env;
  if (!env.CNI_COMMAND && plugin.about && stdinIsTerminal()) writeOut(2, `${plugin.about}\n`);
  try {
    stdin = readStdinSync(); // empty for a terminal: VERSION then answers the latest
  } catch (e) {
    writeOut(1, JSON.stringify(asCniError(e).toJSON(LATEST_VERSION)));
    process.exitCode = 1;
    return;
  }
  dispatch(plugin, env, stdin).then(
    (out) => {
      if (out.stdout) writeOut(1, out.stdout);
      process.exitCode = out.exitCode;
    },
    (e) => {
      // dispatch does not throw; this is a last guard so stdout still gets an error JSON.
      writeOut(1, JSON.stringify(asCniError(e).toJSON(LATEST_VERSION)));
      process.exitCode = 1;
    },
  );
}
