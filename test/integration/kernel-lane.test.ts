// The VLAN suites (test/kernel) need 8021q, which this machine's kernel lacks: this suite boots the
// kernel lane once (scripts/kernel-run: Debian's user-mode-linux 6.1 with this machine's
// userspace), runs every test/kernel suite inside it with mocha, and turns each inner result into
// a test here, so `npm test` and CI show them by name with their failures. The inner spec output
// and the lane's timings are printed too. Skipped (saying why) only when the lane cannot start on
// this machine at all. See docs/kernel-lane.md.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as MochaLib from 'mocha';
import { requireRoot } from '../lab/lab';
import { buildKnit } from '../lab/cni';

const ROOT = path.resolve(__dirname, '../..');
const MARK = '##knit-lane ';
/**
 * The lane's own limit; mocha's timeout below is larger so the lane reports a timeout itself.
 * 1500: with the encrypted named network tests the whole lane took 1113 s at host load 5-8.
 */
const LANE_TIMEOUT_S = Number(process.env.KNIT_KERNEL_TIMEOUT || 1500);
/** Which suites run inside (space-separated paths or globs, for working on one area); default all. */
const LANE_FILES = (process.env.KNIT_KERNEL_FILES || 'test/kernel/*.test.ts').split(/\s+/).filter(Boolean);

interface InnerEvent {
  event: 'begin' | 'pass' | 'fail' | 'pending' | 'suite' | 'end';
  title?: string;
  file?: string;
  ms?: number;
  message?: string;
  stack?: string;
  stats?: { tests: number; passes: number; pending: number; failures: number; duration: number };
}

interface LaneRun {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

function kernelRun(args: string[], env: Record<string, string>): Promise<LaneRun> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(path.join(ROOT, 'scripts/kernel-run'), args, {
      cwd: ROOT, env: { ...process.env, ...env }, maxBuffer: 64 << 20, encoding: 'utf8',
      timeout: (LANE_TIMEOUT_S + 60) * 1000, killSignal: 'SIGTERM',
    }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

const indent = (text: string, pad = '      │ '): string => text.replace(/\s+$/, '').split('\n').map((l) => pad + l).join('\n');

describe('kernel lane: test/kernel under user-mode-linux 6.1 (8021q)', function () {
  this.timeout((LANE_TIMEOUT_S + 120) * 1000);
  let run: LaneRun;
  let events: InnerEvent[] = [];

  before(async function () {
    requireRoot(this);
    const env: Record<string, string> = {};
    // A private build of what the suites execute (like the other integration suites), so
    // unrelated work in progress in dist/ cannot break them; the guest sees it through the
    // shared root. Without the plugin the inner suite skips, saying so.
    if (fs.existsSync(path.join(ROOT, 'cmd/knit-macvlan/main.ts'))) {
      env.KNIT_KERNEL_BIN = (await buildKnit(['knit-macvlan', 'knit-host-local', 'knit-etcd-ipam', 'knitd', 'knitctl', 'knit-overlay', 'knit-l2overlay'])).binDir;
    }
    run = await kernelRun(['--timeout', String(LANE_TIMEOUT_S), '--',
      'node_modules/.bin/mocha', '--reporter', 'scripts/kernel/mocha-reporter.js', ...LANE_FILES], env);

    if (run.code === 125 && /kernel-run: cannot start:/.test(run.stderr)) {
      console.log(`      skipped: the kernel lane cannot start on this machine: ${run.stderr.trim().split('\n').pop()}`);
      this.skip();
    }

    const human: string[] = [];
    for (const line of run.stdout.split('\n')) {
      if (line.startsWith(MARK)) {
        try { events.push(JSON.parse(line.slice(MARK.length)) as InnerEvent); } catch { human.push(line); }
      } else human.push(line);
    }
    console.log(`      ── inside the lane (exit ${run.code}) ──`);
    console.log(indent(human.join('\n')));
    const lane = run.stderr.split('\n').filter((l) => l.startsWith('kernel-run:'));
    const begin = events.find((e) => e.event === 'begin');
    const suites = [
      ...(begin ? [`mocha start-up (node, tsx, test files): ${((begin.ms ?? 0) / 1000).toFixed(1)} s`] : []),
      ...events.filter((e) => e.event === 'suite').map((e) => `suite "${e.title}": ${((e.ms ?? 0) / 1000).toFixed(1)} s`),
    ];
    console.log(indent([...lane, ...suites, `kernel-run as seen from here: ${(run.ms / 1000).toFixed(1)} s`].join('\n'), '      ⏱ '));
    const innerErr = run.stderr.split('\n').filter((l) => !l.startsWith('kernel-run: boot')).join('\n').trim();
    if (run.code !== 0 && innerErr) console.log(indent(innerErr, '      stderr │ '));
    const reasons = human.filter((l) => /^\s*skipped:/.test(l)).map((l) => l.trim());

    // One test here per inner test, in the inner order.
    const suite = this.test!.parent!;
    for (const e of events) {
      if (e.event !== 'pass' && e.event !== 'fail' && e.event !== 'pending') continue;
      suite.addTest(new MochaLib.Test(`[lane] ${e.title}`, function (this: Mocha.Context) {
        if (e.event === 'pending') {
          if (reasons.length) console.log(`      ${reasons.join('\n      ')}`);
          this.skip();
        }
        if (e.event === 'fail') {
          const err = new Error(`${e.message}\n--- inside the lane ---\n${e.stack ?? ''}`);
          err.stack = err.message;
          throw err;
        }
      }));
    }
    // The summary test below runs after the inner ones.
    suite.tests.push(...suite.tests.splice(0, 1));
  });

  it('boots once and runs every test/kernel suite to the end without a failure', () => {
    const end = events.find((e) => e.event === 'end');
    assert.ok(end?.stats, `the inner mocha never finished (kernel-run exit ${run.code}):\n${run.stderr.slice(-4000)}`);
    assert.equal(end.stats.failures, 0, `${end.stats.failures} of ${end.stats.tests} tests failed inside the lane`);
    assert.equal(run.code, 0, `kernel-run exited ${run.code}:\n${run.stderr.slice(-4000)}`);
  });
});
