// What every knitctl command group shares: how a command is defined (group, leaf), the usage-error
// class, the etcd flags (global: accepted before or after the command words) and the etcd
// connection built from them, the pod network's datastore, and tables.
import type { Argv, CommandModule, Options, PositionalOptions } from 'yargs';
import { EtcdDatastore } from '../../pkg/datastore/etcd-overlay';
import { parseEtcdConn, type EtcdConnConfig } from '../../pkg/ipam/etcd-config';

/** A mistake in the command line: `knitctl: <message>` and exit code 2 (failures exit 1). */
export class UsageError extends Error {}

export interface Ctx {
  /** Waits between the two looks of `ipam gc --pods` (tests pass their own). */
  sleep: (ms: number) => Promise<void>;
  env: NodeJS.ProcessEnv;
  /** Lines for stderr besides an error (deprecation warnings). */
  warnings: string[];
  /** The words of the deepest command whose builder ran: the command being parsed. */
  path: string[];
  /** That command's usage (`knitctl node rm <name>`), or null for the root or a group. */
  usage: string | null;
  /** Full words of hidden commands: never suggested for a mistyped one. */
  hidden: Set<string>;
  /** The handler's output, once it ran. */
  out: string | null;
}

export interface Leaf {
  /** yargs command string: the verb and its positionals, e.g. 'rm <name>'. */
  command: string;
  /** Shown in help; false hides the command (deprecated aliases). */
  describe: string | false;
  options?: Record<string, Options>;
  positionals?: Record<string, PositionalOptions>;
  /** More set-up of the parser (checks, examples, epilogue). */
  builder?: (y: Argv) => Argv;
  /** The command itself: its output text (without the final newline). */
  run: (a: Flags, ctx: Ctx) => Promise<string>;
}

/** A command that runs: `words` are its full command words (['ipam', 'ls']) for errors and help. */
export function leaf(ctx: Ctx, words: string[], spec: Leaf): CommandModule {
  if (spec.describe === false) ctx.hidden.add(words.join(' '));
  return {
    command: spec.command,
    describe: spec.describe,
    builder: (y: Argv) => {
      ctx.path = words;
      ctx.usage = `knitctl ${[...words.slice(0, -1), spec.command].join(' ')}`;
      for (const [name, o] of Object.entries(spec.positionals ?? {})) y.positional(name, o);
      y.options(spec.options ?? {});
      if (spec.options) y.group(Object.keys(spec.options), 'Flags:');
      return spec.builder ? spec.builder(y) : y;
    },
    handler: async (a) => { ctx.out = await spec.run(a as unknown as Flags, ctx); },
  };
}

/** The demandCommand message, recognised by cli.ts's fail(). */
export const MISSING = '\0missing command';

/** A command of commands (`ipam ls|gc`): without one, its help and exit code 2. */
export function group(ctx: Ctx, words: string[], spec: { describe: string | false; commands: (ctx: Ctx) => CommandModule[] }): CommandModule {
  if (spec.describe === false) ctx.hidden.add(words.join(' '));
  return {
    // Not `ipam <command>`: that positional would take a mistyped command's word, and yargs
    // would then report a missing command instead of suggesting one.
    command: words.at(-1)!,
    describe: spec.describe,
    builder: (y: Argv) => {
      ctx.path = words;
      ctx.usage = null;
      for (const c of spec.commands(ctx)) y.command(c);
      y.usage(`knitctl ${words.join(' ')} <command>${spec.describe ? `\n\n${spec.describe}` : ''}`);
      return y.demandCommand(1, MISSING);
    },
    handler: () => { /* only its commands run */ },
  };
}

/** The flags of knitctl's command line after parsing (yargs' argv; dashed keys only). */
export type Flags = Record<string, unknown> & { _: Array<string | number> };

/** A string flag's value, or undefined when not given. */
export const str = (a: Flags, name: string): string | undefined => (a[name] === undefined ? undefined : String(a[name]));

/** A value flag: a string (so `--node 007` stays "007"), its value required; given twice, the last one. */
export const value = (describe: string, more: Options = {}): Options => ({ type: 'string', requiresArg: true, coerce: last, describe, ...more });
const last = (v: unknown): unknown => (Array.isArray(v) ? v[v.length - 1] : v);

export const ETCD_GROUP = 'etcd flags:';
export const ETCD_OPTIONS: Record<string, Options> = {
  'etcd-endpoints': value('URL[,URL...], default $KNIT_ETCD_ENDPOINTS or http://127.0.0.1:2379'),
  'etcd-prefix': value('key prefix, default /knit'),
  'etcd-cafile': value('CA bundle (PEM) to verify the members'),
  'etcd-certfile': value('client certificate (PEM)'),
  'etcd-keyfile': value('client key (PEM)'),
  'etcd-username': value('user for etcd authentication'),
  'etcd-password': value('password (or $KNIT_ETCD_PASSWORD, kept out of the process list)'),
  'etcd-timeout': value('milliseconds per request, default 5000'),
};

/** The etcd connection from the etcd flags and the environment; errors name the flag. */
export function etcdConfFromArgs(a: Flags, env: NodeJS.ProcessEnv = process.env): EtcdConnConfig {
  const eps = (str(a, 'etcd-endpoints') ?? env.KNIT_ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379').split(',').map((s) => s.trim()).filter(Boolean);
  const tls: Record<string, string> = {};
  const abs = (f: string): string => (f.startsWith('/') ? f : `${process.cwd()}/${f}`);
  const ca = str(a, 'etcd-cafile');
  const cert = str(a, 'etcd-certfile');
  const key = str(a, 'etcd-keyfile');
  if (ca !== undefined) tls.ca = abs(ca);
  if (cert !== undefined) tls.cert = abs(cert);
  if (key !== undefined) tls.key = abs(key);
  const raw: Record<string, unknown> = { endpoints: eps };
  if (Object.keys(tls).length) raw.tls = tls;
  if (a['etcd-prefix'] !== undefined) raw.prefix = str(a, 'etcd-prefix');
  if (a['etcd-timeout'] !== undefined) raw.timeoutMs = Number(str(a, 'etcd-timeout'));
  if (a['etcd-username'] !== undefined) raw.username = str(a, 'etcd-username');
  const pw = str(a, 'etcd-password') ?? env.KNIT_ETCD_PASSWORD;
  if (pw !== undefined) raw.password = pw;
  try {
    return parseEtcdConn(raw, 'etcd');
  } catch (e) {
    // Name flags, not config keys.
    throw new UsageError((e as Error).message.replace(/etcd\.endpoints(\[\d+\])?/, '--etcd-endpoints').replace(/etcd\.tls\.ca/, '--etcd-cafile').replace(/etcd\.tls\.cert/, '--etcd-certfile')
      .replace(/etcd\.tls\.key/, '--etcd-keyfile').replace(/etcd\.tls/, '--etcd-certfile/--etcd-keyfile').replace(/etcd\.prefix/, '--etcd-prefix').replace(/etcd\.timeoutMs/, '--etcd-timeout').replace(/etcd\.username/, '--etcd-username'));
  }
}

/** The pod network's datastore (knitd's leases and config) for one command, closed after it. */
export async function withStore<T>(a: Flags, env: NodeJS.ProcessEnv, fn: (store: EtcdDatastore) => Promise<T>): Promise<T> {
  const store = new EtcdDatastore(etcdConfFromArgs(a, env));
  try { return await fn(store); } finally { store.close(); }
}

/** Columns padded to their widest cell, two spaces apart; the last column unpadded. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

/** Orders IPv4 before IPv6 and IPv4 numerically. */
export function ipSort(a: string, b: string): number {
  const key = (s: string): string => (s.includes(':') ? `6${s}` : `4${s.split('.').map((x) => x.padStart(3, '0')).join('.')}`);
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}
