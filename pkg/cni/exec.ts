// Delegation (SPEC.md section 4): find a plugin in CNI_PATH, run it with the caller's environment
// and config, and turn its output into a 1.x Result or a CniError. IPAM goes through an IpamRunner
// so pkg/ipam can serve knit's own IPAM types in-process and exec everything else.
import { CniError, Code, show } from './errors';
import { parseResult, convertResult } from './result';
import { isSupportedVersion } from './version';
import type { Env } from './env';
import type { Context } from './skel';
import type { Logger } from './log';
import type { NetConf, Result, VersionInfo } from './types';

export type DelegateCommand = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC';

/**
 * Runs the IPAM for one verb. `conf` is what the IPAM gets (normally ctx.conf or ctx.rawConf);
 * resolves to the IPAM's result on ADD and undefined otherwise.
 */
export type IpamRunner = (command: DelegateCommand, ctx: Context, conf: NetConf | Buffer) => Promise<Result | undefined>;

export interface ExecOptions {
  log?: Logger;
  /** Kill the delegate after this long (code 103). Default: no limit, as the reference. */
  timeoutMs?: number;
  /** Copy the delegate's stderr to ours as it arrives (the spec asks for it). Default true. */
  forwardStderr?: boolean;
}

const TYPE_VALID = "a plugin executable name without '/' or '\\'";

/** Absolute path of plugin `type` in the CNI_PATH directories; code 7 for a bad name, 5 when missing. */
export function findInPath(type: string, paths: readonly string[]): string {
  if (typeof type !== 'string' || type === '' || type === '.' || type === '..' || /[/\\\0]/.test(type)) {
    throw new CniError(Code.InvalidConfig, `invalid plugin type ${show(type)}: ${TYPE_VALID}`);
  }
  if (!paths.length) {
    throw new CniError(Code.InvalidEnvironment, `CNI_PATH is empty: cannot find plugin ${show(type)}; set CNI_PATH to the directories holding CNI plugins, separated by ':'`);
  }
  const fs = require('node:fs') as typeof import('node:fs');
  for (const dir of paths) {
    const p = `${dir.replace(/\/+$/, '')}/${type}`;
    try {
      if (fs.statSync(p).isFile()) {
        fs.accessSync(p, fs.constants.X_OK);
        return p;
      }
    } catch {
      // not here (or not executable): keep looking
    }
  }
  throw new CniError(Code.IOFailure, `failed to find plugin ${show(type)} in path [${paths.join(' ')}]`, 'looked for an executable file of that name in each CNI_PATH directory');
}

/** The JSON a delegate gets: a parsed NetConf has its 1.x prevResult put back into its cniVersion's form. */
function stdinFor(conf: object | Buffer | string): Buffer | string {
  if (Buffer.isBuffer(conf) || typeof conf === 'string') return conf;
  const c = conf as NetConf;
  if (c.prevResult && isSupportedVersion(c.cniVersion)) {
    return JSON.stringify({ ...c, prevResult: convertResult(c.prevResult, c.cniVersion) });
  }
  return JSON.stringify(conf);
}

interface RawOutcome { stdout: string; stderrTail: string; exitCode: number | null; signal: string | null }

/** Spawns `file` with stdin and env; collects stdout, a stderr tail and the exit status. */
function run(file: string, stdin: Buffer | string, env: Env, opts: ExecOptions): Promise<RawOutcome> {
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  return new Promise((resolve, reject) => {
    const clean: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
    const child = spawn(file, [], { env: clean, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let tail = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      if (opts.forwardStderr !== false) process.stderr.write(d);
      tail = (tail + d.toString('utf8')).slice(-2000);
    });
    child.on('error', (e) => { if (timer) clearTimeout(timer); reject(e); });
    let timedOut = false;
    const finish = (exitCode: number | null, signal: string | null): void => {
      if (timer) clearTimeout(timer);
      resolve({ stdout: Buffer.concat(out).toString('utf8'), stderrTail: tail, exitCode, signal });
    };
    child.on('close', finish);
    // After a timeout kill, a grandchild may still hold the pipes open: do not wait for it.
    child.on('exit', (code, signal) => {
      if (!timedOut) return;
      child.stdout.destroy();
      child.stderr.destroy();
      finish(code, signal);
    });
    child.stdin.on('error', () => { /* EPIPE when the delegate exits without reading: its status tells */ });
    child.stdin.end(stdin);
    if (opts.timeoutMs) timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs);
  });
}

/**
 * Executes delegated plugin `type` for `command` with stdin = conf and the CNI_* environment `env`
 * (on top of ours, CNI_COMMAND set to the verb). ADD resolves to the result in 1.x form; other
 * verbs to undefined. A CNI error printed by the delegate is rethrown with its code, msg and
 * details; a failure without one is code 103 carrying the delegate's stderr tail.
 */
export async function execPlugin(
  type: string, command: DelegateCommand, conf: object | Buffer | string, env: Env, paths: readonly string[], opts: ExecOptions = {},
): Promise<Result | undefined> {
  const file = findInPath(type, paths);
  const childEnv: Env = { ...process.env, ...env, CNI_COMMAND: command };
  if (!childEnv.CNI_PATH) childEnv.CNI_PATH = paths.join(':');
  const t0 = Date.now();
  let o: RawOutcome;
  try {
    o = await run(file, stdinFor(conf), childEnv, opts);
  } catch (e) {
    throw new CniError(Code.DelegateFailed, `failed to run delegated plugin ${show(type)} (${file}): ${(e as Error).message}`);
  }
  opts.log?.debug('delegate', { type, command, exitCode: o.exitCode, ms: Date.now() - t0 });
  if (o.exitCode !== 0) throw delegateError(type, file, o, opts.timeoutMs);
  if (command !== 'ADD') return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(o.stdout);
  } catch (e) {
    throw new CniError(Code.DecodeFailure, `failed to decode the result of delegated plugin ${show(type)}: ${(e as Error).message}`, `stdout: ${show(o.stdout)}`);
  }
  return parseResult(raw, { path: `result of ${type}`, code: Code.DecodeFailure });
}

function delegateError(type: string, file: string, o: RawOutcome, timeoutMs?: number): CniError {
  try {
    const j = JSON.parse(o.stdout) as Record<string, unknown>;
    if (j && typeof j.code === 'number') {
      return new CniError(j.code, typeof j.msg === 'string' ? j.msg : `delegated plugin ${show(type)} failed`, typeof j.details === 'string' && j.details ? j.details : undefined);
    }
  } catch {
    // not a CNI error document
  }
  const how = o.signal
    ? `was killed by ${o.signal}${timeoutMs && o.signal === 'SIGKILL' ? ` after the ${timeoutMs} ms limit` : ''}`
    : `exited with status ${o.exitCode}`;
  const tail = o.stderrTail.trim().slice(-500);
  const stdout = o.stdout.trim() ? `; stdout: ${show(o.stdout.trim())}` : '';
  return new CniError(Code.DelegateFailed, `delegated plugin ${show(type)} (${file}) ${how} without a CNI error${stdout}`, tail ? `stderr: ${tail}` : undefined);
}

/** Asks a plugin which versions it speaks (VERSION with {"cniVersion"} on stdin). */
export async function execVersion(type: string, paths: readonly string[], cniVersion: string, env: Env = {}, opts: ExecOptions = {}): Promise<VersionInfo> {
  const file = findInPath(type, paths);
  const o = await run(file, JSON.stringify({ cniVersion }), { ...process.env, ...env, CNI_COMMAND: 'VERSION' }, opts);
  if (o.exitCode !== 0) throw delegateError(type, file, o, opts.timeoutMs);
  try {
    const j = JSON.parse(o.stdout) as VersionInfo;
    if (typeof j.cniVersion === 'string' && Array.isArray(j.supportedVersions)) return j;
  } catch {
    // fall through
  }
  throw new CniError(Code.DecodeFailure, `failed to decode the VERSION answer of ${show(type)}`, `stdout: ${show(o.stdout)}`);
}

// ---- delegation from inside a plugin ----------------------------------------------------------

/** The delegate receives the same config the plugin got (SPEC.md section 4), unless one is given. */
export async function delegateAdd(type: string, ctx: Context, conf: object | Buffer = ctx.rawConf): Promise<Result> {
  const r = await execPlugin(type, 'ADD', conf, ctx.env, ctx.path, { log: ctx.log });
  if (!r) throw new CniError(Code.DelegateFailed, `delegated plugin ${show(type)} returned no result`);
  return r;
}

export async function delegateDel(type: string, ctx: Context, conf: object | Buffer = ctx.rawConf): Promise<void> {
  await execPlugin(type, 'DEL', conf, ctx.env, ctx.path, { log: ctx.log });
}

export async function delegateCheck(type: string, ctx: Context, conf: object | Buffer = ctx.rawConf): Promise<void> {
  await execPlugin(type, 'CHECK', conf, ctx.env, ctx.path, { log: ctx.log });
}

export async function delegateStatus(type: string, ctx: Context, conf: object | Buffer = ctx.rawConf): Promise<void> {
  await execPlugin(type, 'STATUS', conf, ctx.env, ctx.path, { log: ctx.log });
}

export async function delegateGc(type: string, ctx: Context, conf: object | Buffer = ctx.rawConf): Promise<void> {
  await execPlugin(type, 'GC', conf, ctx.env, ctx.path, { log: ctx.log });
}

/** The IPAM type named by a config (Buffer configs are decoded for it). */
function ipamType(ctx: Context, conf: NetConf | Buffer): string {
  const c = Buffer.isBuffer(conf) ? (conf === ctx.rawConf ? ctx.conf : (JSON.parse(conf.toString('utf8')) as NetConf)) : conf;
  const t = c.ipam?.type;
  if (!t) throw new CniError(Code.InvalidConfig, 'ipam.type is required to delegate address management: the IPAM plugin to run, e.g. "host-local"');
  return t;
}

/** IpamRunner that execs `ipam.type` from CNI_PATH: the spec's way, used for every non-knit IPAM. */
export const execIpam: IpamRunner = (command, ctx, conf) =>
  execPlugin(ipamType(ctx, conf), command, conf, ctx.env, ctx.path, { log: ctx.log });

/**
 * The ADD rule of SPEC.md section 4: run the IPAM's ADD, then `rest` with its result. If either
 * fails, run the IPAM's DEL (its own failure is only logged) and rethrow the original error, so a
 * failed ADD leaves no address reserved.
 */
export async function withIpamCleanup<T>(
  ctx: Context, ipam: IpamRunner, rest: (ipamResult: Result) => Promise<T>, conf: NetConf | Buffer = ctx.conf,
): Promise<T> {
  const release = async (cause: unknown): Promise<void> => {
    try {
      await ipam('DEL', ctx, conf);
    } catch (e) {
      ctx.log.warn(`IPAM DEL after a failed ADD also failed: ${(e as Error).message}`, { cause: (cause as Error)?.message });
    }
  };
  let r: Result | undefined;
  try {
    r = await ipam('ADD', ctx, conf);
    if (!r) throw new CniError(Code.DelegateFailed, 'the IPAM returned no result from ADD');
  } catch (e) {
    await release(e);
    throw e;
  }
  try {
    return await rest(r);
  } catch (e) {
    await release(e);
    throw e;
  }
}
