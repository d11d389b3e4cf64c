// The release build: one single executable (dist/release/knit layout) that answers as each
// knit plugin through its symlink exactly as the dist/bin bundle does, with no Node on PATH.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '../..');
const STDIN = '{"cniVersion":"1.0.0"}';

/** CNI plugins (cmd/knit-*) with an entry; knitd and knitctl are not CNI plugins. */
function plugins(): string[] {
  return readdirSync(join(root, 'cmd'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name.startsWith('knit-') && existsSync(join(root, 'cmd', d.name, 'main.ts')))
    .map((d) => d.name)
    .sort();
}

interface Outcome { status: number | null; stdout: string }

function invoke(file: string, env: Record<string, string>, args: string[] = []): Outcome {
  const r = spawnSync(file, args, { env, input: STDIN, encoding: 'utf8', timeout: 20000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout };
}

describe('release: self-contained multi-call executable', function () {
  this.timeout(240000);
  let out = '';
  let names: string[] = [];

  before(function () {
    names = plugins();
    if (names.length === 0) {
      console.log('    skipped: no cmd/knit-*/main.ts to build');
      this.skip();
    }
    // The bundle is the oracle; build it when this test runs on its own.
    if (names.some((n) => !existsSync(join(root, 'dist/bin', n)))) {
      execFileSync(process.execPath, [join(root, 'esbuild.config.mjs')], { cwd: root, stdio: 'ignore' });
    }
    out = mkdtempSync(join(tmpdir(), 'knit-release-test-'));
    execFileSync(process.execPath, [join(root, 'scripts/release.mjs'), '--out', out], { cwd: root, stdio: 'ignore' });
  });
  after(() => { if (out) rmSync(out, { recursive: true, force: true }); });

  it('lays out one binary, a relative symlink per command, and the addon beside it', () => {
    assert.ok(lstatSync(join(out, 'knit')).isFile());
    for (const n of names) assert.equal(readlinkSync(join(out, n)), 'knit');
    if (existsSync(join(root, 'build/Release/knit_netlink.node'))) {
      assert.ok(existsSync(join(out, 'knit_netlink.node')));
    }
  });

  it('PATH=/nonexistent really hides node', () => {
    const r = spawnSync('/bin/sh', ['-c', 'command -v node'], { env: { PATH: '/nonexistent' } });
    assert.notEqual(r.status, 0);
  });

  it('answers VERSION through each symlink like the bundle, without Node on PATH', () => {
    for (const n of names) {
      const expected = invoke(join(root, 'dist/bin', n), { CNI_COMMAND: 'VERSION', PATH: process.env.PATH ?? '' });
      assert.equal(expected.status, 0, `bundle ${n} VERSION failed`);
      const parsed = JSON.parse(expected.stdout) as { cniVersion: string; supportedVersions: string[] };
      assert.ok(parsed.supportedVersions.includes('1.0.0'));
      const got = invoke(join(out, n), { CNI_COMMAND: 'VERSION', PATH: '/nonexistent' });
      assert.deepEqual(got, expected, n);
      assert.deepEqual(JSON.parse(got.stdout), parsed);
    }
  });

  it('also dispatches as "knit <command>" and reports an error the same way as the bundle', () => {
    const n = names[0];
    const viaWord = invoke(join(out, 'knit'), { CNI_COMMAND: 'VERSION', PATH: '/nonexistent' }, [n]);
    assert.deepEqual(viaWord, invoke(join(out, n), { CNI_COMMAND: 'VERSION', PATH: '/nonexistent' }));
    // No CNI_COMMAND: a spec error on stdout with a non-zero exit, identical in both forms.
    const bundleErr = invoke(join(root, 'dist/bin', n), { PATH: process.env.PATH ?? '' });
    const releaseErr = invoke(join(out, n), { PATH: '/nonexistent' });
    assert.notEqual(releaseErr.status, 0);
    assert.deepEqual(releaseErr, bundleErr);
  });

  it('prints usage for an unknown command', () => {
    const r = spawnSync(join(out, 'knit'), ['no-such-plugin'], { env: { PATH: '/nonexistent' }, encoding: 'utf8' });
    assert.equal(r.status, 127);
    assert.match(r.stderr, /commands: .*knit-/);
  });
});
