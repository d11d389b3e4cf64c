// Delegation against the real reference plugins (Debian containernetworking-plugins in /usr/lib/cni),
// and a knit-style plugin bundled with esbuild and run as a real executable through main().
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execPlugin, execIpam, execVersion, withIpamCleanup } from '../../pkg/cni/exec';
import { dispatch, type Context, type Plugin } from '../../pkg/cni/skel';
import { CniError } from '../../pkg/cni/errors';
import type { Result } from '../../pkg/cni/types';

const REF = '/usr/lib/cni';
const ROOT = resolve(__dirname, '../..');

describe('cni exec against the reference plugins', function () {
  let dir: string;
  let dataDir: string;
  // NODE_EXTRA_CA_CERTS triples node's start-up (docs/design.md D4): plugins run without it.
  const env = (id: string) => ({ CNI_CONTAINERID: id, CNI_NETNS: '/run/netns/knit-none', CNI_IFNAME: 'eth0', CNI_PATH: REF, KNIT_LOG_LEVEL: 'silent', NODE_EXTRA_CA_CERTS: undefined });
  const hostLocal = (version: string, subnet = '10.77.0.0/24') => ({
    cniVersion: version, name: 'knitnet', type: 'knit-fake',
    ipam: { type: 'host-local', subnet, gateway: subnet.replace(/0\/\d+$/, '1'), dataDir, routes: [{ dst: '0.0.0.0/0' }] },
  });
  /** Addresses reserved in the host-local store (files named like IPs). */
  const reserved = (): string[] => {
    const d = join(dataDir, 'knitnet');
    return existsSync(d) ? readdirSync(d).filter((f) => /^[0-9a-f.:]+$/.test(f) && f.includes('.')) : [];
  };

  before(function () {
    if (!existsSync(join(REF, 'host-local'))) this.skip();
    dir = mkdtempSync(join(tmpdir(), 'knit-cniexec-'));
  });
  beforeEach(() => { dataDir = mkdtempSync(join(dir, 'data-')); });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  for (const version of ['0.3.1', '0.4.0', '1.0.0']) {
    it(`host-local ADD/DEL at ${version}: result parsed into 1.x, reservation made and released`, async () => {
      const r = (await execPlugin('host-local', 'ADD', hostLocal(version), env('ctr-a'), [REF])) as Result;
      assert.equal(r.cniVersion, version);
      assert.deepEqual(r.ips, [{ address: '10.77.0.2/24', gateway: '10.77.0.1' }]);
      assert.equal((r.ips![0] as unknown as Record<string, unknown>).version, undefined);
      assert.deepEqual(r.routes, [{ dst: '0.0.0.0/0' }]);
      assert.deepEqual(reserved(), ['10.77.0.2']);
      assert.equal(await execPlugin('host-local', 'DEL', hostLocal(version), env('ctr-a'), [REF]), undefined);
      assert.deepEqual(reserved(), []);
    });
  }

  it('host-local CHECK gets a 0.4.0 prevResult back in 0.4.0 form', async () => {
    const conf = hostLocal('0.4.0');
    const r = (await execPlugin('host-local', 'ADD', conf, env('ctr-c'), [REF]))!;
    await execPlugin('host-local', 'CHECK', { ...conf, prevResult: r }, env('ctr-c'), [REF]);
    await assert.rejects(execPlugin('host-local', 'CHECK', { ...conf, prevResult: r }, env('ctr-other'), [REF]), (e: unknown) => e instanceof CniError);
    await execPlugin('host-local', 'DEL', conf, env('ctr-c'), [REF]);
  });

  it('a missing plugin names the type and the CNI_PATH dirs', async () => {
    await assert.rejects(execPlugin('knit-nope', 'ADD', hostLocal('1.0.0'), env('x'), [REF, '/opt/knit-none']), (e: unknown) => {
      assert.ok(e instanceof CniError);
      assert.equal(e.code, 5);
      assert.equal(e.message, 'failed to find plugin "knit-nope" in path [/usr/lib/cni /opt/knit-none]');
      return true;
    });
  });

  it('the delegate\'s error JSON is propagated with its code and message', async () => {
    await assert.rejects(execPlugin('host-local', 'ADD', hostLocal('1.0.0', '10.77.0.0/33'), env('x'), [REF]), (e: unknown) => {
      assert.ok(e instanceof CniError);
      assert.equal(e.code, 999);
      assert.match(e.message, /invalid CIDR address: 10.77.0.0\/33/);
      return true;
    });
    await assert.rejects(execPlugin('host-local', 'ADD', hostLocal('1.0.0'), { ...env('x'), CNI_ARGS: 'FOO=1' }, [REF]), (e: unknown) => e instanceof CniError && /unknown args/.test(e.message));
    // The reference skel itself: CHECK at 0.3.1 is refused with code 1.
    await assert.rejects(execPlugin('host-local', 'CHECK', hostLocal('0.3.1'), env('x'), [REF]), (e: unknown) => e instanceof CniError && e.code === 1);
  });

  it('execVersion asks the reference plugin', async () => {
    const v = await execVersion('host-local', [REF], '0.4.0');
    assert.ok(v.supportedVersions.includes('0.4.0'));
  });

  describe('withIpamCleanup with the real host-local', () => {
    const plugin = (fail: boolean): Plugin => ({
      name: 'knit-fake',
      add: (ctx: Context) => withIpamCleanup(ctx, execIpam, async (ipam) => {
        if (fail) throw new CniError(100, 'kernel refused the veth', 'EEXIST');
        return { ...ipam, interfaces: [{ name: ctx.ifName, sandbox: ctx.netns }], ips: ipam.ips!.map((i) => ({ ...i, interface: 0 })) };
      }),
      del: async (ctx) => { await execIpam('DEL', ctx, ctx.rawConf); },
      check: async () => {}, status: async () => {}, gc: async () => {},
      skipNetnsCheck: true,
    });
    const run = (p: Plugin, cmd: string, version: string, id: string) =>
      dispatch(p, { ...env(id), CNI_COMMAND: cmd }, Buffer.from(JSON.stringify(hostLocal(version))));

    it('a failing main step after ADD leaves no reservation, and the original error is printed', async () => {
      const out = await run(plugin(true), 'ADD', '1.0.0', 'ctr-fail');
      assert.equal(out.exitCode, 1);
      assert.deepEqual(JSON.parse(out.stdout), { cniVersion: '1.0.0', code: 100, msg: 'kernel refused the veth', details: 'EEXIST' });
      assert.deepEqual(reserved(), []);
      assert.ok(existsSync(join(dataDir, 'knitnet')), 'host-local did run');
    });

    it('success path: result printed in the config version', async () => {
      const out = await run(plugin(false), 'ADD', '1.0.0', 'ctr-ok');
      assert.equal(out.exitCode, 0, out.stdout);
      const r = JSON.parse(out.stdout);
      assert.equal(r.cniVersion, '1.0.0');
      assert.deepEqual(r.ips, [{ address: '10.77.0.2/24', gateway: '10.77.0.1', interface: 0 }]);
      assert.deepEqual(reserved(), ['10.77.0.2']);
      assert.equal((await run(plugin(false), 'DEL', '1.0.0', 'ctr-ok')).exitCode, 0);
      assert.deepEqual(reserved(), []);
    });
  });

  describe('main() as a real executable', () => {
    let bin: string;
    before(async function () {
      this.timeout(30000);
      const src = join(dir, 'plugin.ts');
      writeFileSync(src, `
        import { main } from ${JSON.stringify(join(ROOT, 'pkg/cni/skel'))};
        import { delegateAdd, delegateDel } from ${JSON.stringify(join(ROOT, 'pkg/cni/exec'))};
        main({
          name: 'knit-fake', about: 'knit-fake test plugin', skipNetnsCheck: true,
          add: async (ctx) => { const r = await delegateAdd(ctx.conf.ipam!.type, ctx); return { ...r, interfaces: [{ name: ctx.ifName, sandbox: ctx.netns }] }; },
          del: async (ctx) => { await delegateDel(ctx.conf.ipam!.type, ctx); },
          check: async () => {}, status: async () => {}, gc: async () => {},
        });
      `);
      const esbuild = await import('esbuild');
      const js = join(dir, 'knit-fake.js');
      await esbuild.build({ entryPoints: [src], bundle: true, platform: 'node', target: 'node20', outfile: js, logLevel: 'silent' });
      bin = join(dir, 'bin');
      require('node:fs').mkdirSync(bin);
      writeFileSync(join(bin, 'knit-fake'), `#!/bin/sh\nexec ${process.execPath} ${js}\n`);
      chmodSync(join(bin, 'knit-fake'), 0o755);
    });

    it('ADD/DEL through the executable with host-local as its IPAM', async () => {
      const paths = [bin, REF];
      const e = { ...env('ctr-main'), CNI_PATH: paths.join(':') };
      const r = (await execPlugin('knit-fake', 'ADD', hostLocal('0.4.0'), e, paths))!;
      assert.equal(r.cniVersion, '0.4.0');
      assert.deepEqual(r.interfaces, [{ name: 'eth0', sandbox: '/run/netns/knit-none' }]);
      assert.deepEqual(r.ips, [{ address: '10.77.0.2/24', gateway: '10.77.0.1' }]);
      await execPlugin('knit-fake', 'DEL', hostLocal('0.4.0'), e, paths);
      assert.deepEqual(reserved(), []);
    });

    it('errors are one JSON document on stdout with exit 1; VERSION answers the requested version', async () => {
      const { spawnSync } = await import('node:child_process');
      const run = (cmd: string, stdin: string, extra: Record<string, string | undefined> = {}) =>
        spawnSync(join(bin, 'knit-fake'), [], { input: stdin, env: { PATH: process.env.PATH ?? '', CNI_COMMAND: cmd, ...extra }, encoding: 'utf8' });
      const bad = run('ADD', '{nope', { ...env('c'), CNI_PATH: REF });
      assert.equal(bad.status, 1);
      assert.equal(JSON.parse(bad.stdout).code, 6);
      const noNetns = run('ADD', '{}', { CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0' });
      assert.equal(noNetns.status, 1);
      assert.match(JSON.parse(noNetns.stdout).msg, /CNI_NETNS is required for ADD/);
      const v = run('VERSION', '{"cniVersion":"0.4.0"}');
      assert.equal(v.status, 0);
      assert.deepEqual(JSON.parse(v.stdout), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
      const v2 = run('VERSION', '');
      assert.equal(JSON.parse(v2.stdout).cniVersion, '1.1.0');
    });
  });
});
