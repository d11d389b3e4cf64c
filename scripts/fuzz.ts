// npm run fuzz -- [--runs N] [--exec-runs N] [--seed S] [--timeout MS] [--plugins a,b] [--verbose] [--replay exec:I|in-process:I]
// The plugins' property-based fuzz suite (test/fuzz, issue 14): N cases in-process through
// dispatch() and (default N/20, at least 20) exec'd from dist/bin in a netns lab, judged by the
// spec's error codes, with a cleanup DEL and a residue check after every case that may create.
// Prints the seed (replay with --seed), the counts and "N passed, N failed"; exits 1 on any failure.
import { PLUGIN_NAMES, type PluginName } from '../test/fuzz/cases';
import { formatReport, runFuzz } from '../test/fuzz/runner';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
  return v;
}

function int(name: string, dflt: number): number {
  const v = arg(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} ${v}: a non-negative integer`);
  return n;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('npm run fuzz needs root (network namespaces)');
  const runs = int('runs', 2000);
  const seed = int('seed', Math.floor(Math.random() * 2 ** 31));
  const execRuns = int('exec-runs', Math.max(20, Math.round(runs / 20)));
  const replay = arg('replay');
  const only = arg('plugins')?.split(',');
  const bad = only?.find((p) => !(PLUGIN_NAMES as readonly string[]).includes(p));
  if (bad !== undefined) throw new Error(`--plugins ${bad}: one of ${PLUGIN_NAMES.join(', ')}`);
  const plugins = only as PluginName[] | undefined;
  const also = plugins ? ` --plugins ${plugins.join(',')}` : '';
  console.log(`fuzz: seed ${seed}, ${runs} in-process cases, ${execRuns} exec'd (replay: npm run fuzz -- --seed ${seed} --runs ${runs} --exec-runs ${execRuns}${also})`);
  const report = await runFuzz({ seed, runs, execRuns, timeoutMs: int('timeout', 20_000), verbose: process.argv.includes('--verbose'), progress: true, replay, plugins });
  if (!report) return;
  console.log(formatReport(report));
  process.exitCode = report.failed ? 1 : 0;
}

main().catch((e) => { console.error(`fuzz: ${(e as Error).message}`); process.exitCode = 2; });
