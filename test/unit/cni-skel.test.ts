import assert from 'node:assert/strict';
import { dispatch, type Context, type Plugin } from '../../pkg/cni/skel';
import { CniError } from '../../pkg/cni/errors';
import type { Command, Result } from '../../pkg/cni/types';

const ENV = { CNI_CONTAINERID: 'ctr1', CNI_NETNS: '/run/netns/pod', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin', CNI_NETNS_OVERRIDE: '1', KNIT_LOG_LEVEL: 'silent' };
const VERBS: Command[] = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC'];

function confFor(cmd: Command, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const c: Record<string, unknown> = { cniVersion: '1.1.0', name: 'net1', type: 'test' };
  if (cmd === 'GC') c['cni.dev/valid-attachments'] = [{ containerID: 'ctr1', ifname: 'eth0' }];
  if (cmd === 'CHECK') c.prevResult = { cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24' }] };
  return { ...c, ...extra };
}

const RESULT: Result = {
  cniVersion: '1.1.0',
  interfaces: [{ name: 'eth0', mac: '0a:00:00:00:00:02', mtu: 1500, sandbox: '/run/netns/pod' }],
  ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 0 }],
  routes: [{ dst: '0.0.0.0/0', mtu: 1400 }],
};

class TestPlugin implements Plugin {
  name = 'test';
  seen: Context | undefined;
  fail: unknown;
  knownArgs?: readonly string[];
  private async run(ctx: Context): Promise<void> {
    this.seen = ctx;
    if (this.fail !== undefined) throw this.fail;
  }
  async add(ctx: Context): Promise<Result> { await this.run(ctx); return RESULT; }
  async del(ctx: Context): Promise<void> { await this.run(ctx); }
  async check(ctx: Context): Promise<void> { await this.run(ctx); }
  async status(ctx: Context): Promise<void> { await this.run(ctx); }
  async gc(ctx: Context): Promise<void> { await this.run(ctx); }
}

async function run(cmd: string, stdin: string | object, env: Record<string, string | undefined> = ENV, plugin = new TestPlugin()) {
  const buf = Buffer.from(typeof stdin === 'string' ? stdin : JSON.stringify(stdin));
  const out = await dispatch(plugin, { ...env, CNI_COMMAND: cmd }, buf);
  const json = out.stdout ? JSON.parse(out.stdout) : undefined;
  return { ...out, json, plugin };
}

function assertError(r: { exitCode: number; json: any; stdout: string }, code: number, re?: RegExp): void {
  assert.equal(r.exitCode, 1, r.stdout);
  assert.equal(r.json.code, code, r.stdout);
  if (re) assert.match(r.json.msg, re);
  assert.equal(typeof r.json.cniVersion, 'string');
}

describe('cni dispatch', () => {
  describe('every verb', () => {
    for (const cmd of VERBS) {
      it(`${cmd} succeeds with a good request`, async () => {
        const r = await run(cmd, confFor(cmd));
        assert.equal(r.exitCode, 0, r.stdout);
        assert.equal(r.plugin.seen?.command, cmd);
        if (cmd !== 'ADD') assert.equal(r.stdout, '');
      });
      it(`${cmd}: non-JSON stdin → 6`, async () => assertError(await run(cmd, '{"cniVersion": "1.1.0",'), 6, /failed to decode network config on stdin/));
      it(`${cmd}: empty stdin → 6`, async () => assertError(await run(cmd, ''), 6, /empty/));
      it(`${cmd}: JSON array → 6`, async () => assertError(await run(cmd, '[]'), 6, /got a list/));
      it(`${cmd}: JSON number → 6`, async () => assertError(await run(cmd, '7'), 6, /got a number/));
      it(`${cmd}: unsupported cniVersion → 1`, async () => {
        const r = await run(cmd, confFor(cmd, { cniVersion: '0.2.0' }));
        assertError(r, 1, /cniVersion "0.2.0" is not supported; supported versions are 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0/);
        assert.equal(r.json.cniVersion, '1.1.0');
      });
      it(`${cmd}: missing name → 7`, async () => assertError(await run(cmd, confFor(cmd, { name: undefined })), 7, /name is required/));
      it(`${cmd}: plugin CniError passes through with details`, async () => {
        const p = new TestPlugin();
        p.fail = new CniError(cmd === 'STATUS' ? 50 : 104, 'bridge br0 holds 10.9.0.1/24', 'expected 10.0.0.1/24');
        const r = await run(cmd, confFor(cmd), ENV, p);
        assertError(r, cmd === 'STATUS' ? 50 : 104, /bridge br0/);
        assert.equal(r.json.details, 'expected 10.0.0.1/24');
      });
      it(`${cmd}: unknown exception → 5 without a stack trace`, async () => {
        const p = new TestPlugin();
        const err = new Error('boom') as NodeJS.ErrnoException;
        err.code = 'EPERM';
        err.syscall = 'open';
        p.fail = err;
        const r = await run(cmd, confFor(cmd), ENV, p);
        assertError(r, 5, /^boom$/);
        assert.equal(r.json.details, 'EPERM open');
        assert.doesNotMatch(r.stdout, /at |\.ts:/);
      });
      it(`${cmd}: a thrown string → 5`, async () => {
        const p = new TestPlugin();
        p.fail = 'weird';
        assertError(await run(cmd, confFor(cmd), ENV, p), 5, /weird/);
      });
    }
  });

  describe('environment', () => {
    it('missing CNI_COMMAND → 4', async () => {
      const out = await dispatch(new TestPlugin(), { ...ENV }, Buffer.from('{}'));
      assert.equal(out.exitCode, 1);
      assert.match(JSON.parse(out.stdout).msg, /CNI_COMMAND is required: one of ADD, DEL, CHECK, STATUS, GC, VERSION/);
    });
    it('unknown CNI_COMMAND → 4', async () => assertError(await run('GET', confFor('ADD')), 4, /invalid CNI_COMMAND "GET"/));
    for (const cmd of ['ADD', 'CHECK', 'DEL'] as const) {
      for (const v of ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME']) {
        const required = !(cmd === 'DEL' && v === 'CNI_NETNS');
        it(`${cmd} without ${v} → ${required ? '4' : 'ok'}`, async () => {
          const r = await run(cmd, confFor(cmd), { ...ENV, [v]: undefined });
          if (required) assertError(r, 4, new RegExp(`^${v} is required for ${cmd}`));
          else assert.equal(r.exitCode, 0, r.stdout);
        });
      }
      it(`${cmd}: bad CNI_IFNAME → 4 before the plugin runs`, async () => {
        const r = await run(cmd, confFor(cmd), { ...ENV, CNI_IFNAME: '../etc' });
        assertError(r, 4, /invalid CNI_IFNAME "..\/etc"/);
        assert.equal(r.plugin.seen, undefined);
      });
      it(`${cmd}: bad CNI_CONTAINERID → 4 before the plugin runs`, async () => {
        const r = await run(cmd, confFor(cmd), { ...ENV, CNI_CONTAINERID: 'a/../../b' });
        assertError(r, 4, /invalid CNI_CONTAINERID "a\/..\/..\/b"/);
        assert.equal(r.plugin.seen, undefined);
      });
    }
    for (const cmd of ['STATUS', 'GC'] as const) {
      it(`${cmd} needs no attachment variables`, async () => {
        const r = await run(cmd, confFor(cmd), { CNI_PATH: '/opt/cni/bin' });
        assert.equal(r.exitCode, 0, r.stdout);
        assert.equal(r.plugin.seen?.containerId, '');
      });
    }
    it('env errors come before stdin errors (as the reference)', async () => assertError(await run('ADD', 'garbage', { ...ENV, CNI_NETNS: '' }), 4));
  });

  describe('CNI_NETNS check', () => {
    const env = { ...ENV, CNI_NETNS_OVERRIDE: undefined };
    it('ADD into the plugin\'s own netns → 4', async () => {
      assertError(await run('ADD', confFor('ADD'), { ...env, CNI_NETNS: '/proc/self/ns/net' }), 4, /invalid CNI_NETNS "\/proc\/self\/ns\/net": it is the plugin's own network namespace/);
    });
    it('missing netns file → 4', async () => {
      assertError(await run('CHECK', confFor('CHECK'), { ...env, CNI_NETNS: '/run/netns/knit-does-not-exist' }), 4, /no such file; the path of the container's network namespace/);
    });
    it('DEL never checks (best effort)', async () => {
      assert.equal((await run('DEL', confFor('DEL'), { ...env, CNI_NETNS: '/run/netns/knit-does-not-exist' })).exitCode, 0);
    });
    it('CNI_NETNS_OVERRIDE=1 and skipNetnsCheck skip it', async () => {
      assert.equal((await run('ADD', confFor('ADD'), { ...env, CNI_NETNS: '/proc/self/ns/net', CNI_NETNS_OVERRIDE: 'true' })).exitCode, 0);
      const p = new TestPlugin();
      (p as Plugin).skipNetnsCheck = true;
      assert.equal((await run('ADD', confFor('ADD'), { ...env, CNI_NETNS: '/nope' }, p)).exitCode, 0);
    });
  });

  describe('ADD output', () => {
    for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
      it(`printed in the config's version ${v}`, async () => {
        const r = await run('ADD', confFor('ADD', { cniVersion: v }));
        assert.equal(r.exitCode, 0);
        assert.equal(r.json.cniVersion, v);
        if (v.startsWith('0.')) {
          assert.equal(r.json.ips[0].version, '4');
          assert.equal(r.json.interfaces[0].mtu, undefined);
          assert.deepEqual(r.json.routes, [{ dst: '0.0.0.0/0' }]);
        } else {
          assert.equal(r.json.ips[0].version, undefined);
          assert.equal(r.json.routes[0].mtu, 1400);
        }
      });
    }
    it('error JSON carries the config\'s cniVersion', async () => {
      const p = new TestPlugin();
      p.fail = new CniError(11, 'busy');
      const r = await run('ADD', confFor('ADD', { cniVersion: '0.4.0' }), ENV, p);
      assert.deepEqual(r.json, { cniVersion: '0.4.0', code: 11, msg: 'busy' });
    });
    it('a plugin returning nothing → 5', async () => {
      const p = new TestPlugin();
      p.add = async () => undefined as unknown as Result;
      assertError(await run('ADD', confFor('ADD'), ENV, p), 5, /returned no result/);
    });
  });

  describe('context', () => {
    it('carries env values, parsed args, path, raw and parsed conf', async () => {
      const stdin = confFor('ADD', { cniVersion: '0.4.0', prevResult: { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.0.0.9/24' }] }, runtimeConfig: { mac: '0a:00:00:00:00:07' } });
      const r = await run('ADD', stdin, { ...ENV, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.9', CNI_PATH: '/a:/b' });
      const ctx = r.plugin.seen!;
      assert.equal(ctx.containerId, 'ctr1');
      assert.equal(ctx.netns, '/run/netns/pod');
      assert.equal(ctx.ifName, 'eth0');
      assert.deepEqual(ctx.path, ['/a', '/b']);
      assert.equal(ctx.args.k8sPodName, 'web');
      assert.equal(ctx.args.ips[0]!.text, '10.0.0.9');
      assert.deepEqual(ctx.conf.prevResult, { cniVersion: '0.4.0', ips: [{ address: '10.0.0.9/24' }] });
      assert.equal(ctx.conf.runtimeConfig?.mac, '0a:00:00:00:00:07');
      assert.deepEqual(JSON.parse(ctx.rawConf.toString()), stdin);
      assert.equal(ctx.env.CNI_ARGS, 'IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.9');
      assert.deepEqual(ctx.validAttachments, []);
    });
    it('GC exposes cni.dev/valid-attachments', async () => {
      const r = await run('GC', confFor('GC', { 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }, { containerID: 'b', ifname: 'net1' }] }));
      assert.deepEqual(r.plugin.seen!.validAttachments, [{ containerID: 'a', ifname: 'eth0' }, { containerID: 'b', ifname: 'net1' }]);
    });
    it('GC without valid-attachments → 7 (never collect everything by accident)', async () => {
      assertError(await run('GC', confFor('ADD')), 7, /cni.dev\/valid-attachments is required for GC/);
    });
    it('CHECK below 0.4.0, STATUS/GC below 1.1.0 → 1', async () => {
      assertError(await run('CHECK', confFor('CHECK', { cniVersion: '0.3.1' })), 1, /does not allow CHECK/);
      assertError(await run('STATUS', confFor('STATUS', { cniVersion: '1.0.0' })), 1, /does not allow STATUS/);
      assertError(await run('GC', confFor('GC', { cniVersion: '0.4.0' })), 1, /does not allow GC/);
    });
    it('bad runtimeConfig → 7 naming the path', async () => {
      assertError(await run('ADD', confFor('ADD', { runtimeConfig: { portMappings: [{ hostPort: 'x', containerPort: 80 }] } })), 7, /runtimeConfig.portMappings\[0\].hostPort "x"/);
    });
  });

  describe('CNI_ARGS', () => {
    it('ADD refuses unknown keys without IgnoreUnknown → 4', async () => {
      assertError(await run('ADD', confFor('ADD'), { ...ENV, CNI_ARGS: 'FOO=bar' }), 4, /unknown keys \["FOO=bar"\]/);
    });
    it('a plugin\'s knownArgs are accepted', async () => {
      const p = new TestPlugin();
      p.knownArgs = ['FOO'];
      const r = await run('ADD', confFor('ADD'), { ...ENV, CNI_ARGS: 'FOO=bar' }, p);
      assert.equal(r.exitCode, 0);
      assert.equal(r.plugin.seen!.args.raw.FOO, 'bar');
    });
    it('DEL tolerates bad CNI_ARGS (cleanup must go on)', async () => {
      const r = await run('DEL', confFor('DEL'), { ...ENV, CNI_ARGS: 'FOO=bar;IP=nope' });
      assert.equal(r.exitCode, 0, r.stdout);
    });
    it('bad IP in CNI_ARGS on ADD → 4 naming key and value', async () => {
      assertError(await run('ADD', confFor('ADD'), { ...ENV, CNI_ARGS: 'IP=10.0.0.999' }), 4, /invalid CNI_ARGS IP "10.0.0.999"/);
    });
  });

  describe('VERSION', () => {
    it('answers latest on empty stdin, with no other variables', async () => {
      const out = await dispatch(new TestPlugin(), { CNI_COMMAND: 'VERSION' }, Buffer.alloc(0));
      assert.equal(out.exitCode, 0);
      assert.deepEqual(JSON.parse(out.stdout), { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    });
    for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
      it(`echoes requested ${v}`, async () => assert.equal((await run('VERSION', { cniVersion: v })).json.cniVersion, v));
    }
    it('unsupported request → latest, not an error', async () => {
      const r = await run('VERSION', { cniVersion: '0.1.0' });
      assert.equal(r.exitCode, 0);
      assert.equal(r.json.cniVersion, '1.1.0');
    });
    it('ignores the rest of the config (no validation)', async () => {
      const r = await run('VERSION', { cniVersion: '0.4.0', name: '', type: 5, runtimeConfig: 'x' }, { CNI_IFNAME: '../../x' });
      assert.equal(r.exitCode, 0);
      assert.equal(r.json.cniVersion, '0.4.0');
    });
    it('non-JSON → 6', async () => assertError(await run('VERSION', 'nope'), 6, /VERSION request/));
  });
});
