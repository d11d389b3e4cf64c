// The plugin registry (plugins/registry.ts) is the one list of knit's plugins: every executable
// in cmd/ that is a plugin has an entry, every entry's folder exists and its plugin answers to
// the entry's name, and knitd serves them all.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PLUGINS, loadAll } from '../../plugins/registry';

const ROOT = path.resolve(__dirname, '../..');

describe('plugin registry', () => {
  it('has one entry per plugin executable in cmd/, and nothing else', () => {
    const exes = fs.readdirSync(path.join(ROOT, 'cmd')).filter((d) => d.startsWith('knit-') && fs.existsSync(path.join(ROOT, 'cmd', d, 'main.ts')));
    assert.deepEqual(PLUGINS.map((e) => e.name).sort(), exes.sort());
  });

  it('each entry lives in its folder under plugins/<kind>/ and loads the plugin of that name', () => {
    for (const e of PLUGINS) {
      assert.ok(e.home.startsWith(`plugins/${e.kind}/`), e.home);
      assert.ok(fs.existsSync(path.join(ROOT, e.home, 'plugin.ts')), `${e.home}/plugin.ts`);
      const p = e.load();
      assert.equal(p.name, e.name);
      for (const verb of ['add', 'del', 'check', 'status', 'gc'] as const) assert.equal(typeof p[verb], 'function', `${e.name}.${verb}`);
    }
  });

  it('every executable runs the registry\'s plugin object', () => {
    for (const e of PLUGINS) {
      const main = fs.readFileSync(path.join(ROOT, 'cmd', e.name, 'main.ts'), 'utf8');
      assert.ok(main.includes(`'../../${e.home}/plugin'`), `cmd/${e.name}/main.ts imports ${e.home}/plugin`);
    }
  });

  it('knitd serves every plugin, knit-etcd-ipam included', () => {
    assert.deepEqual([...loadAll().keys()].sort(), PLUGINS.map((e) => e.name).sort());
    assert.ok(loadAll().has('knit-etcd-ipam'));
  });
});
