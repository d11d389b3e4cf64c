// npm run chaos -- [--runs N] [--seed S] [--only REGEX] [--verbose]
// The kill -9 suite (test/lab/chaos.ts): every main plugin with knit-host-local and
// knit-etcd-ipam, exec'd and under knitd, killed with SIGKILL at random moments and at every
// named step; then DEL, re-ADD and DEL, with an oracle for residue, duplicates and orphaned
// reservations. Seeded: the same seed makes the same choices. Exit status 1 when a run failed.
import { parseArgs } from 'node:util';
import { formatReport, runChaos } from '../test/lab/chaos';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '100' },
      seed: { type: 'string' },
      only: { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${values.runs}: a positive integer`);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed ${values.seed}: a non-negative integer`);
  if (process.getuid?.() !== 0) throw new Error('chaos needs root (network namespaces)');
  console.log(`seed ${seed}`);
  const report = await runChaos({
    runs, seed, verbose: values.verbose, log: (l) => console.log(l),
    ...(values.only ? { only: new RegExp(values.only) } : {}),
  });
  console.log(formatReport(report));
  process.exitCode = report.failed || report.unexpected ? 1 : 0;
}

main().catch((e) => { console.error(`chaos: ${(e as Error).stack ?? e}`); process.exitCode = 2; });
