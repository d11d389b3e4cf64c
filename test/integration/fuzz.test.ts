// The fuzz suite's short seeded run inside `npm test` (issue 14): a few hundred cases in-process
// through dispatch() and a dozen exec'd from dist/bin, in a netns lab with etcd, judged by the
// spec's codes, with a cleanup DEL and a residue check after each case that may create. Long
// runs: `npm run fuzz -- --runs N --seed S`. FUZZ_SEED / FUZZ_RUNS / FUZZ_EXEC_RUNS override.
import assert from 'node:assert/strict';
import { requireRoot } from '../lab/lab';
import { requireEtcd } from '../lab/etcd';
import { formatReport, runFuzz } from '../fuzz/runner';

describe('fuzz: every plugin and verb under malformed stdin and environment (issue 14)', function () {
  this.timeout(240_000);
  before(function () {
    requireRoot(this);
    requireEtcd(this);
  });

  it('no crash, wrong answer, leak, residue or hang', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? 1414);
    const report = await runFuzz({
      seed, runs: Number(process.env.FUZZ_RUNS ?? 300), execRuns: Number(process.env.FUZZ_EXEC_RUNS ?? 12), timeoutMs: 30_000,
    });
    assert.ok(report);
    const text = formatReport(report);
    console.log(text.split('\n').map((l) => `      ${l}`).join('\n'));
    assert.ok(report.cases >= 300, `${report.cases} cases`);
    assert.equal(report.failed, 0, text);
    assert.deepEqual({ crashes: report.crashes, wrong: report.wrong, leaks: report.leaks, residue: report.residue, hangs: report.hangs },
      { crashes: 0, wrong: 0, leaks: 0, residue: 0, hangs: 0 }, text);
  });
});
