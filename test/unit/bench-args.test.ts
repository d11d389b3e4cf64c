import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parseArgs } from '../../scripts/bench';
import { cleanEnv } from '../../scripts/bench/runner';

describe('bench: arguments and environment', () => {
  it('defaults to 30 runs, 5 warm-up, bench/results', () => {
    const a = parseArgs([]);
    assert.deepEqual(a.suites, []);
    assert.equal(a.runs, 30);
    assert.equal(a.warmup, 5);
    assert.equal(a.out, join(__dirname, '../../bench/results'));
  });

  it('parses --suite (repeated or comma list), --runs N and --runs=N', () => {
    const a = parseArgs(['--suite', 'version', '--suite=bridge,macvlan', '--runs=7', '--warmup', '0']);
    assert.deepEqual(a.suites, ['version', 'bridge', 'macvlan']);
    assert.equal(a.runs, 7);
    assert.equal(a.warmup, 0);
  });

  it('rejects unknown flags and bad numbers', () => {
    assert.throws(() => parseArgs(['--fast']), /unknown argument --fast/);
    assert.throws(() => parseArgs(['--runs', 'x']), /whole number/);
    assert.throws(() => parseArgs(['--runs', '0']), /at least 1/);
  });

  it('timed processes never see NODE_EXTRA_CA_CERTS or NODE_OPTIONS', () => {
    const env = cleanEnv({ PATH: '/bin', NODE_EXTRA_CA_CERTS: '/x.crt', NODE_OPTIONS: '--import tsx', HOME: undefined });
    assert.deepEqual(env, { PATH: '/bin' });
  });
});
