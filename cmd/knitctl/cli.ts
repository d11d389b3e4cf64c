// knitctl's command line on yargs (docs/overlay.md#knitctl-yargs): the root parser and the error
// style. Each command group is one file, commands/<group>.ts, built with common.ts's group/leaf.
//
// Conventions, for every command:
// - a command's output is its handler's return value, on stdout, exit code 0;
// - a usage error (unknown command or flag, missing or extra argument, bad flag value):
//   `knitctl: <message>` and `See 'knitctl <command> --help'.` on stderr, exit code 2;
//   a missing command prints that level's help on stderr before the message;
// - a failure (etcd, a bad config file, a node without a lease...): `knitctl: <message>` on
//   stderr, exit code 1;
// - `--help`/`-h` on any command prints its help on stdout, exit code 0.
// run() returns all three instead of printing, so tests drive the parser in-process.
import type { Argv, CommandModule } from 'yargs';
import { ETCD_GROUP, ETCD_OPTIONS, MISSING, UsageError, type Ctx } from './common';
import * as attach from './commands/attach';
import * as dns from './commands/dns';
import * as ipam from './commands/ipam';
import * as key from './commands/key';
import * as network from './commands/network';
import * as node from './commands/node';
import * as overlay from './commands/overlay';
import * as podNetwork from './commands/pod-network';
import * as service from './commands/service';

/** Every command group of knitctl, in the order of the top-level help. */
function groups(ctx: Ctx): CommandModule[] {
  return [ipam, podNetwork, overlay, node, network, attach, service, dns, key].flatMap((g) => g.commands(ctx));
}

/** The knitctl parser for one run (yargs instances keep state: one per run). */
export function buildCli(ctx: Ctx, argv: string[]): Argv {
  // yargs' CommonJS build: an `import` would make esbuild bundle its ES build, whose platform shim
  // takes its directory from import.meta.url (empty in our CommonJS bundles: it falls back to the
  // working directory). yargs/yargs is the factory (yargs' default export is a process-wide instance).
  const yargs = require('yargs/yargs') as typeof import('yargs/yargs');
  const y = yargs(argv) as unknown as Argv;
  let suggestion: string | null = null;
  return y
    .scriptName('knitctl')
    // English whatever $LANG says: rephrase() reads yargs' English messages (and the bundle
    // carries no locale files anyway).
    .detectLocale(false)
    .parserConfiguration({
      // Flags exactly as documented (no --etcdEndpoints, no --no-json). A flag given twice
      // collects both values: what Docker-style repeated flags (--subnet A --subnet B) need;
      // single-value flags keep the last one (common.ts value()).
      'camel-case-expansion': false,
      'boolean-negation': false,
    })
    .usage('usage: knitctl <command> [flags]\n\nThe knit admin CLI: cluster-wide IPAM (knit-etcd-ipam) and the routed pod network (knitd).')
    // knitctl's words (and the same in any process: yargs' strings are shared by every instance
    // of the module, mocha's included, which renames these three).
    .updateStrings({ 'Commands:': 'Commands:', 'Options:': 'Flags:', 'Positionals:': 'Arguments:', 'Show help': 'show help' })
    .options(ETCD_OPTIONS)
    .group(Object.keys(ETCD_OPTIONS), ETCD_GROUP)
    .command(groups(ctx))
    .completion('completion', 'print the bash/zsh completion script (knitctl completion >> ~/.bashrc)')
    .demandCommand(1, MISSING)
    .recommendCommands()
    .strict()
    .help()
    .alias('help', 'h')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 110))
    .epilogue("Run 'knitctl <command> --help' for a command's flags.")
    // A flag given with an empty value (--network=) is as wrong as one without; a switch takes
    // none (--json=x; yargs reads --json=false as false).
    .check((a) => {
      for (const [k, v] of Object.entries(a)) if (v === '' && k !== '$0' && argv.some((x) => x === `--${k}` || x.startsWith(`--${k}=`))) throw new UsageError(`--${k} needs a value`);
      for (const x of argv) {
        const m = /^--([^=]+)=(.*)$/.exec(x);
        if (m && typeof a[m[1]!] === 'boolean' && m[2] !== 'true' && m[2] !== 'false') throw new UsageError(`--${m[1]} takes no value`);
      }
      return true;
    })
    .fail((msg, err, usage) => {
      // Errors of knitctl's own checks as they are; yargs' own (YError: a flag without its value...) rephrased.
      if (err && err.name !== 'YError') throw err;
      if (err) msg = err.message;
      // recommendCommands reports first, then strict mode the unknown word: one message of both.
      const dym = /^Did you mean (.+)\?$/.exec(msg ?? '');
      if (dym) {
        if (!ctx.hidden.has([...ctx.path, dym[1]!].join(' '))) suggestion = dym[1]!;
        return;
      }
      if (msg === MISSING) throw new MissingCommand(ctx.path, ctx.hidden.has(ctx.path.join(' ')) ? null : (usage as unknown as { help(): string }).help());
      throw new UsageError(rephrase(msg ?? 'invalid command line', argv, ctx, suggestion));
    });
}

/** yargs' validation messages in knitctl's words (flags with their dashes, a suggestion inline). */
function rephrase(msg: string, argv: string[], ctx: Ctx, suggestion: string | null): string {
  const unknown = /^Unknown arguments?: (.+)$/.exec(msg);
  if (unknown) {
    const flags = new Set(argv.filter((x) => x.startsWith('-')).map((x) => x.replace(/^-+/, '').split('=')[0]));
    const [first] = unknown[1]!.split(', ');
    if (flags.has(first!)) return `unknown flag ${first!.length === 1 ? '-' : '--'}${first}`;
    // A word where a command was expected (the root, a group), or one too many after a command.
    if (ctx.usage !== null) return `unexpected argument ${JSON.stringify(first)} (usage: ${ctx.usage})`;
    return `unknown command ${JSON.stringify(first)}${suggestion ? `: did you mean ${JSON.stringify(suggestion)}?` : ''}`;
  }
  const following = /^Not enough arguments following: (.+)$/.exec(msg);
  if (following) return `--${following[1]} needs a value`;
  if (/^Not enough non-option arguments/.test(msg) && ctx.usage) return `missing argument (usage: ${ctx.usage})`;
  return msg;
}

class MissingCommand extends UsageError {
  /** help: that level's, or null for a hidden group. */
  constructor(readonly words: string[], readonly help: string | null) {
    super(words.length ? `missing command after '${words.join(' ')}'` : 'missing command');
  }
}

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Parses and runs one knitctl command line: what to print and the exit code. */
export async function run(argv: string[], sleep: (ms: number) => Promise<void> = wait, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; out: string; err: string }> {
  const ctx: Ctx = { sleep, env, warnings: [], path: [], usage: null, hidden: new Set(), out: null };
  let output = '';
  const warnings = (): string => (argv.includes('--get-yargs-completions') ? '' : ctx.warnings.map((w) => `knitctl: ${w}\n`).join(''));
  try {
    await buildCli(ctx, argv).parseAsync(argv, {}, (_e, _a, o) => { output = o; });
    const warn = warnings();
    // --help, completion: yargs' own output; else the command's.
    return { code: 0, out: ctx.out !== null ? `${ctx.out}\n` : output ? `${output}\n` : '', err: warn };
  } catch (e) {
    const warn = warnings();
    if (e instanceof MissingCommand && e.help !== null) return { code: 2, out: '', err: `${warn}${e.help}\n\nknitctl: ${e.message}\n` };
    if (e instanceof UsageError) {
      // The help of the command being parsed (the root's for a hidden one).
      const path = ctx.hidden.has(ctx.path.join(' ')) ? [] : ctx.path;
      const see = `See 'knitctl${path.length ? ` ${path.join(' ')}` : ''} --help'.`;
      return { code: 2, out: '', err: `${warn}knitctl: ${e.message}\n${see}\n` };
    }
    return { code: 1, out: '', err: `${warn}knitctl: ${(e as Error)?.message ?? e}\n` };
  }
}
