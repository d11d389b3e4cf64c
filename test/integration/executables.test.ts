// The built executables as a runtime sees them: VERSION answered by the launcher without Node
// exactly as the Node path answers it, and for every verb the spec's error codes for bad
// environments and bad stdin, with nothing but one JSON document on stdout.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/bin');
const PLUGINS = ['knit-bridge', 'knit-host-local'];

function run(file: string, env: Record<string, string | undefined>, input: string, viaNode = false): { out: string; code: number; json: any } {
  const e: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) e[k] = v;
  const r = viaNode
    ? spawnSync(process.execPath, [file], { env: e, input, encoding: 'utf8' })
    : spawnSync(file, [], { env: e, input, encoding: 'utf8' });
  let json: any;
  try { json = JSON.parse(r.stdout); } catch { json = undefined; }
  return { out: r.stdout, code: r.status ?? -1, json };
}

const CONF = (extra: object = {}): string => JSON.stringify({ cniVersion: '1.0.0', name: 'exe', type: 'x', ipam: { type: 'knit-host-local', ranges: [[{ subnet: '10.9.0.0/24' }]] }, ...extra });

describe('executables (dist/bin)', function () {
  before(function () {
    if (!PLUGINS.every((p) => existsSync(join(BIN, p)))) execFileSync('node', ['esbuild.config.mjs'], { cwd: ROOT, stdio: 'ignore' });
  });

  it('every cmd/ folder with a main.ts has an executable, and the knitd client is in dist/lib', () => {
    const cmds = readdirSync(join(ROOT, 'cmd'), { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(ROOT, 'cmd', d.name, 'main.ts'))).map((d) => d.name);
    for (const c of cmds) assert.ok(existsSync(join(BIN, c)), `dist/bin/${c}`);
    assert.ok(existsSync(join(ROOT, 'dist/lib/knit-client')), 'dist/lib/knit-client (cmd/client, built by node-gyp)');
  });

  for (const plugin of PLUGINS) {
    describe(plugin, () => {
      const file = join(BIN, plugin);
      const inputs = [
        '{"cniVersion":"1.0.0"}', '{"cniVersion":"0.3.0"}', '{"cniVersion":"0.3.1"}', '{"cniVersion":"0.4.0"}', '{"cniVersion":"1.1.0"}',
        '  {\n "cniVersion" : "0.4.0",\n "name": "x" }\n', '', '\n', '{"cniVersion":"9.9.9"}', '{"name":"a"}',
        '{"a":{"cniVersion":"0.3.1"}}', '{"cniVersion":"1.0.0"', 'garbage', '[1,2]', '{"cniVersion":1}',
      ];
      it('VERSION from the launcher equals the Node path for every input', () => {
        for (const input of inputs) {
          const fast = run(file, { CNI_COMMAND: 'VERSION' }, input);
          const slow = run(file, { CNI_COMMAND: 'VERSION' }, input, true);
          assert.deepEqual({ out: fast.out, code: fast.code }, { out: slow.out, code: slow.code }, `input ${JSON.stringify(input)}`);
        }
      });

      it('VERSION for a well-formed request needs no Node at all', () => {
        const r = run(file, { CNI_COMMAND: 'VERSION', PATH: '/nonexistent', KNIT_NODE: '/nonexistent/node' }, '{"cniVersion":"0.4.0"}');
        assert.equal(r.code, 0);
        assert.equal(r.json.cniVersion, '0.4.0');
        assert.deepEqual(r.json.supportedVersions, ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
      });

      const full = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/1/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: BIN };
      for (const verb of ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC']) {
        it(`${verb}: malformed stdin is code 6, unsupported cniVersion code 1, only JSON on stdout`, () => {
          for (const bad of ['not json', '{"cniVersion":', '']) {
            const r = run(file, { CNI_COMMAND: verb, ...full }, bad);
            assert.equal(r.code, 1, `${verb} ${JSON.stringify(bad)}: ${r.out}`);
            assert.equal(r.json?.code, 6, `${verb} ${JSON.stringify(bad)}: ${r.out}`);
            assert.match(r.json.msg, /decode|stdin|empty/i);
          }
          const v = run(file, { CNI_COMMAND: verb, ...full }, CONF({ cniVersion: '0.2.0' }));
          assert.equal(v.json?.code, 1, v.out);
          assert.match(v.json.msg, /0\.2\.0/);
          assert.match(v.json.msg, /1\.1\.0/);
        });
      }
      for (const verb of ['ADD', 'DEL', 'CHECK']) {
        const required = verb === 'DEL' ? ['CNI_CONTAINERID', 'CNI_IFNAME'] : ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'];
        it(`${verb}: each missing or bad variable is code 4 naming it`, () => {
          for (const name of required) {
            const r = run(file, { CNI_COMMAND: verb, ...full, [name]: undefined }, CONF());
            assert.equal(r.json?.code, 4, `${verb} without ${name}: ${r.out}`);
            assert.match(r.json.msg, new RegExp(name));
          }
          const bad: Array<[string, string]> = [
            ['CNI_IFNAME', 'eth0/../x'], ['CNI_IFNAME', 'a-very-long-interface-name'], ['CNI_IFNAME', 'eth 0'], ['CNI_IFNAME', '..'],
            ['CNI_CONTAINERID', '../../etc'], ['CNI_CONTAINERID', 'has space'], ['CNI_CONTAINERID', '-leading'],
          ];
          for (const [name, value] of bad) {
            const r = run(file, { CNI_COMMAND: verb, ...full, [name]: value }, CONF());
            assert.equal(r.json?.code, 4, `${verb} ${name}=${value}: ${r.out}`);
            assert.ok(r.json.msg.includes(name) && r.json.msg.includes(JSON.stringify(value)), r.json.msg);
          }
        });
      }
      it('an unknown CNI_COMMAND is code 4 listing the valid ones', () => {
        for (const cmd of [undefined, 'add', 'FOO']) {
          const r = run(file, { CNI_COMMAND: cmd }, CONF());
          assert.equal(r.json?.code, 4, r.out);
          assert.match(r.json.msg, /CNI_COMMAND/);
          assert.match(r.json.msg, /ADD.*DEL.*CHECK/);
        }
      });
    });
  }
});
