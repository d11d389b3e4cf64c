// Benchmarks knit beside the reference plugins, interleaved in the same run.
//   npm run bench -- [--suite NAME] [--runs N] [--warmup N] [--out DIR] [--list]
// A suite is a file scripts/bench/suites/<name>.ts exporting `suite: Suite`. Results go to
// <out>/<suite>.json, .md and .svg (default bench/results/); the table is also printed.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, release } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { markdownTable, svgChart } from './bench/report';
import { runCase } from './bench/runner';
import type { CaseResult, Suite, SuiteResult } from './bench/types';

const root = resolve(__dirname, '..');
const suitesDir = join(__dirname, 'bench', 'suites');

interface Args {
  suites: string[];
  runs: number;
  warmup: number;
  out: string;
  list: boolean;
  /** Only cases whose name matches (a regular expression). */
  only?: RegExp;
}

export function parseArgs(argv: string[]): Args {
  const args: Args = { suites: [], runs: 30, warmup: 5, out: join(root, 'bench', 'results'), list: false };
  const positiveInt = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} needs a whole number, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--suite': args.suites.push(...(value() ?? '').split(',').filter(Boolean)); break;
      case '--runs': args.runs = positiveInt(flag, value()); break;
      case '--warmup': args.warmup = positiveInt(flag, value()); break;
      case '--out': args.out = resolve(value() ?? ''); break;
      case '--list': args.list = true; break;
      case '--case': args.only = new RegExp(value() ?? ''); break;
      default: throw new Error(`unknown argument ${a}; use --suite NAME --runs N --warmup N --out DIR --case REGEX --list`);
    }
  }
  if (args.runs < 1) throw new Error('--runs must be at least 1');
  return args;
}

function availableSuites(): string[] {
  return readdirSync(suitesDir).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).sort();
}

async function loadSuite(name: string): Promise<Suite> {
  if (!availableSuites().includes(name)) {
    throw new Error(`no suite "${name}"; available: ${availableSuites().join(', ')}`);
  }
  const mod = (await import(pathToFileURL(join(suitesDir, `${name}.ts`)).href)) as
    { suite?: Suite; default?: { suite?: Suite } };
  const suite = mod.suite ?? mod.default?.suite;
  if (!suite) throw new Error(`scripts/bench/suites/${name}.ts does not export "suite"`);
  return suite;
}

async function runSuite(suite: Suite, args: Args): Promise<SuiteResult> {
  const loadBefore = loadavg()[0];
  const { cases, notes } = await suite.setup({ root, runs: args.runs });
  const results: CaseResult[] = [];
  try {
    for (const c of cases) {
      if (args.only && !args.only.test(c.name)) continue;
      process.stderr.write(`${suite.name}: ${c.name} ...`);
      results.push(await runCase(c, { runs: args.runs, warmup: args.warmup }));
      process.stderr.write(' done\n');
    }
  } finally {
    await suite.teardown?.();
  }
  return {
    suite: suite.name,
    description: suite.description,
    date: new Date().toISOString(),
    host: {
      hostname: hostname(), cpus: cpus().length, kernel: release(), node: process.version,
      load: [loadBefore, loadavg()[0]],
    },
    runs: args.runs,
    warmup: args.warmup,
    notes,
    cases: results,
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.list) {
    console.log(availableSuites().join('\n'));
    return;
  }
  const names = args.suites.length > 0 ? args.suites : ['version'];
  mkdirSync(args.out, { recursive: true });
  for (const name of names) {
    const result = await runSuite(await loadSuite(name), args);
    const base = join(args.out, result.suite);
    const md = markdownTable(result);
    writeFileSync(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
    writeFileSync(`${base}.md`, md);
    writeFileSync(`${base}.svg`, svgChart(result));
    console.log(md);
    process.stderr.write(`wrote ${base}.json .md .svg\n`);
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
