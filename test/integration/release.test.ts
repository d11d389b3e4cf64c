// The release build: one single executable (dist/release/knit layout) that answers as each
// knit plugin through its symlink exactly as the dist/bin bundle does, with no Node on PATH.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
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

function invoke(file: string, env: Record<string, string>, args: string[] = [], input = STDIN): Outcome {
  const r = spawnSync(file, args, { env, input, encoding: 'utf8', timeout: 20000 });
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

  it('lays out one binary, a launcher (or symlink) per command, and the addon beside it', () => {
    assert.ok(lstatSync(join(out, 'knit')).isFile());
    const launcher = existsSync(join(root, 'cmd/launcher.sh'));
    for (const n of names) {
      if (launcher) assert.match(readFileSync(join(out, n), 'utf8'), /^#!\/bin\/sh\n[^]*# knit release launcher/);
      else assert.equal(readlinkSync(join(out, n)), 'knit');
    }
    if (existsSync(join(root, 'build/Release/knit_netlink.node'))) {
      assert.ok(existsSync(join(out, 'knit_netlink.node')));
    }
  });

  it('PATH=/nonexistent really hides node', () => {
    const r = spawnSync('/bin/sh', ['-c', 'command -v node'], { env: { PATH: '/nonexistent' } });
    assert.notEqual(r.status, 0);
  });

  it('answers VERSION through each plugin launcher like the bundle, without Node on PATH', () => {
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

  it('the single executable answers like the bundle when Node runs: VERSION it cannot answer in sh, errors', () => {
    const bundleEnv = { PATH: process.env.PATH ?? '' };
    const bare = { PATH: '/nonexistent' };
    const odd = '{"cniVersion":"9.9.9"}';
    for (const n of names) {
      const expected = invoke(join(root, 'dist/bin', n), { ...bundleEnv, CNI_COMMAND: 'VERSION' }, [], odd);
      assert.deepEqual(invoke(join(out, n), { ...bare, CNI_COMMAND: 'VERSION' }, [], odd), expected, n);
      // No CNI_COMMAND: a spec error on stdout with a non-zero exit, identical in both forms.
      const bundleErr = invoke(join(root, 'dist/bin', n), bundleEnv);
      const releaseErr = invoke(join(out, n), bare);
      assert.notEqual(releaseErr.status, 0);
      assert.deepEqual(releaseErr, bundleErr, n);
    }
  });

  it('dispatches on the invoked name through a symlink, and as "knit <command>"', () => {
    const links = mkdtempSync(join(tmpdir(), 'knit-release-links-'));
    try {
      for (const n of names) {
        symlinkSync(join(out, 'knit'), join(links, n));
        const env = { CNI_COMMAND: 'VERSION', PATH: '/nonexistent' };
        const expected = invoke(join(root, 'dist/bin', n), { CNI_COMMAND: 'VERSION', PATH: process.env.PATH ?? '' });
        assert.deepEqual(invoke(join(links, n), env), expected, `symlink ${n}`);
        assert.deepEqual(invoke(join(out, 'knit'), env, [n]), expected, `knit ${n}`);
      }
    } finally {
      rmSync(links, { recursive: true, force: true });
    }
  });

  it('prints usage for an unknown command', () => {
    const r = spawnSync(join(out, 'knit'), ['no-such-plugin'], { env: { PATH: '/nonexistent' }, encoding: 'utf8' });
    assert.equal(r.status, 127);
    assert.match(r.stderr, /commands: .*knit-/);
  });
});
