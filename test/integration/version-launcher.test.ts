// Issue 14 item 4: the launcher (cmd/launcher.sh, the sh head of every bundle) and the Node path
// (dispatch -> versionRequest) answer VERSION identically for ANY stdin, in time linear in the
// input. Property: for random stdins (seeded fast-check), the bundled executable's stdout and exit
// code equal dispatch()'s in-process answer. Runs in this namespace: VERSION touches nothing.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { dispatch } from '../../pkg/cni/skel';
import { bridge } from '../../plugins/main/bridge/plugin';
import { SUPPORTED_VERSIONS } from '../../pkg/cni/version';

const ROOT = resolve(__dirname, '../..');
const EXE = join(ROOT, 'dist/bin/knit-bridge');
const SEED = Number(process.env.FUZZ_SEED ?? 14);

function execVersion(input: Buffer, env: Record<string, string> = {}): Promise<{ stdout: string; code: number | null; ms: number }> {
  return new Promise((res, rej) => {
    const t0 = Date.now();
    const child = spawn(EXE, [], { env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION', ...env }, stdio: ['pipe', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.on('error', rej);
    child.on('close', (code) => res({ stdout, code, ms: Date.now() - t0 }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

const ws = fc.array(fc.constantFrom(' ', '\t', '\n', '\r', '\v', '\f', '\u00a0'), { maxLength: 3 }).map((a) => a.join(''));
const version = fc.oneof(fc.constantFrom(...SUPPORTED_VERSIONS, '', '0.1.0', '9.9.9', ' 1.0.0', '1.0', '{', '}', ':', '1.0.0\\n', '\u00e9'), fc.string({ maxLength: 8 }));
/** The form runtimes send, with whitespace, odd values and one-byte damage around it. */
const nearRuntime = fc.tuple(ws, ws, ws, ws, ws, ws, version).map(([a, b, c, d, e, f, v]) => `${a}{${b}"cniVersion"${c}:${d}"${v}"${e}}${f}`);
const stdinArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: nearRuntime.map((s) => Buffer.from(s)) },
  { weight: 2, arbitrary: fc.tuple(nearRuntime, fc.nat(), fc.constantFrom('\u0000', '"', '\\', '{', '}', ',', '\ufeff', '\r', 'x'))
    .map(([s, i, ch]) => { const at = i % (s.length + 1); return Buffer.from(s.slice(0, at) + ch + s.slice(at)); }) },
  { weight: 1, arbitrary: fc.tuple(nearRuntime, fc.nat({ max: 40 })).map(([s, n]) => Buffer.from(s.slice(0, n))) },
  { weight: 1, arbitrary: fc.constantFrom('{"cniVersion":"1.0.0","cniVersion":"0.3.1"}', '{"cniVersion":"1.0.0","name":"x"}', '{"a":{"cniVersion":"0.3.1"}}',
    '{"cniVersion":1}', '{"cniVersion":null}', '[]', '1', '"x"', 'null', '{}', '{"cniVersion":"1.0.0"}{}', '{"cniVersion":"\\u0031.0.0"}', '\ufeff{"cniVersion":"0.4.0"}').map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 64 }).map((s) => Buffer.from(s)) },
  // Around the launcher's 4096-byte limit: padded with spaces (still the runtime form) or a key.
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 4070, max: 4110 }), fc.constantFrom(...SUPPORTED_VERSIONS), fc.boolean()).map(([n, v, key]) => {
    const core = key ? `{"cniVersion":"${v}","pad":"` : `{"cniVersion":"${v}"}`;
    return Buffer.from(key ? core + 'x'.repeat(Math.max(0, n - core.length - 2)) + '"}' : ' '.repeat(Math.max(0, n - core.length)) + core);
  }) },
);

describe('VERSION: the launcher and the Node path agree on any stdin (issue 14)', function () {
  this.timeout(120_000);
  before(function () {
    if (!existsSync(EXE)) execFileSync('node', ['esbuild.config.mjs'], { cwd: ROOT, stdio: 'ignore' });
  });

  it(`random stdins (fast-check, seed ${SEED}): same stdout and exit code as dispatch()`, async () => {
    await fc.assert(fc.asyncProperty(stdinArb, async (input) => {
      const node = await dispatch(bridge, { CNI_COMMAND: 'VERSION' }, input);
      const exe = await execVersion(input);
      assert.deepEqual({ stdout: exe.stdout, code: exe.code }, { stdout: node.stdout, code: node.exitCode }, `stdin ${JSON.stringify(input.toString('latin1'))}`);
    }), { seed: SEED, numRuns: Number(process.env.FUZZ_VERSION_RUNS ?? 60) });
  });

  it('bytes the shell cannot keep (NUL, CR, non-ASCII, a lone "\\") reach the Node path intact', async () => {
    for (const s of ['{"cniVersion":"1.0.0"}\0', '\0{"cniVersion":"1.0.0"}', '{"cniVersion":"1.0.0"}\r\n', '{"cniVersion":"1.0.0\\"}', '{"cniVersion":"\u00e9"}', '{"cniVersion":"0.4.0"}\u2028']) {
      const input = Buffer.from(s);
      const node = await dispatch(bridge, { CNI_COMMAND: 'VERSION' }, input);
      const exe = await execVersion(input);
      assert.deepEqual({ stdout: exe.stdout, code: exe.code }, { stdout: node.stdout, code: node.exitCode }, JSON.stringify(s));
    }
  });

  it('linear in the input: 8 MB of stdin are answered (as Node answers) in seconds, not minutes', async () => {
    const input = Buffer.from(JSON.stringify({ cniVersion: '0.3.1', pad: 'x'.repeat(8 << 20) }));
    const exe = await execVersion(input);
    assert.equal(exe.code, 0);
    assert.equal(JSON.parse(exe.stdout).cniVersion, '0.3.1');
    // The old launcher took ~4.5 s for 1 MB (a quadratic `s="$s$l"` loop); Node reads 8 MB in well under a second.
    assert.ok(exe.ms < 10_000, `${exe.ms} ms`);
  });

  it('the runtime form is answered without Node; unwritable TMPDIR falls back to Node with the same answer', async () => {
    const input = Buffer.from('{"cniVersion":"0.4.0"}\n');
    const fast = await execVersion(input, { KNIT_NODE: '/nonexistent/node' });
    assert.equal(fast.code, 0);
    assert.equal(JSON.parse(fast.stdout).cniVersion, '0.4.0');
    const slow = await execVersion(input, { TMPDIR: '/nonexistent-dir' });
    assert.deepEqual(slow.stdout, fast.stdout);
    const noPath = await execVersion(input, { PATH: '/nonexistent', KNIT_NODE: '/nonexistent/node' });
    assert.deepEqual(noPath.stdout, fast.stdout);
  });
});
