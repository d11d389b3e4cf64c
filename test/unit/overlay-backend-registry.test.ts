// The overlay backend registry (pkg/agent/backend/registry.ts): backends register by name, the
// network config and the agent reach them only through it, and VXLAN's details stay in vxlan.ts.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { emptyReport, get, names, newBackend, register, type Backend, type BackendConfig } from '../../pkg/agent/backend';
import { parseNetworkConfig } from '../../pkg/agent/network-config';

const root = path.join(__dirname, '..', '..');
const src = (f: string): string => fs.readFileSync(path.join(root, f), 'utf8');
const importsOf = (f: string): string[] => [...src(f).matchAll(/^import\s[^;]*?from\s+'([^']+)'|^import\s+'([^']+)'/gm)].map((m) => m[1] ?? m[2]!);

describe('overlay backend registry', () => {
  it('has vxlan and host-gw, each registered by its own file', () => {
    assert.deepEqual(names(), ['vxlan', 'host-gw']);
    assert.equal(typeof get('vxlan').create, 'function');
    assert.throws(() => get('geneve'), /unknown backend type "geneve": vxlan or host-gw/);
    assert.throws(() => newBackend({ type: 'geneve' }), /unknown backend type "geneve"/);
    assert.throws(() => register('vxlan', get('vxlan')), /backend "vxlan" is registered twice/);
    for (const [file, name] of [['vxlan.ts', 'vxlan'], ['host-gw.ts', 'host-gw']]) {
      assert.match(src(`pkg/agent/backend/${file}`), new RegExp(`^register\\('${name}',`, 'm'), `${file} registers ${name}`);
    }
  });

  it('a new backend is one registration: the network config validates it by its own rules, newBackend makes it', () => {
    const made: BackendConfig[] = [];
    const fake = (cfg: BackendConfig): Backend => ({
      type: 'test-fake', leaseData: (n) => ({ publicKey: `key-of-${n}` }), ensureLocal: () => ({ mtu: 1420, device: 'fake0' }),
      sync: () => emptyReport(), watched: () => ({ devices: ['fake0'] }), close: () => { made.push(cfg); },
    });
    const undo = register('test-fake', {
      parseConfig: (b) => {
        if (b.port !== undefined && typeof b.port !== 'number') throw new Error(`invalid network config: backend.port ${JSON.stringify(b.port)}: a number`);
        return { type: 'test-fake', port: b.port ?? 51820 };
      },
      create: (cfg) => fake(cfg),
    });
    try {
      const cfg = parseNetworkConfig({ network: '10.216.0.0/16', backend: { type: 'test-fake' } });
      assert.deepEqual(cfg.backend, { type: 'test-fake', port: 51820 });
      assert.throws(() => parseNetworkConfig({ network: '10.216.0.0/16', backend: { type: 'test-fake', port: 'x' } }), /backend\.port "x": a number/);
      const b = newBackend(cfg.backend);
      assert.deepEqual(b.leaseData('n1'), { publicKey: 'key-of-n1' });
      b.close();
      assert.deepEqual(made, [{ type: 'test-fake', port: 51820 }]);
      assert.throws(() => parseNetworkConfig({ network: '10.216.0.0/16', backend: { type: 'nope' } }), /backend\.type "nope": "vxlan" or "host-gw" or "test-fake"/);
    } finally {
      undo();
    }
    assert.deepEqual(names(), ['vxlan', 'host-gw']);
    assert.throws(() => parseNetworkConfig({ network: '10.216.0.0/16', backend: { type: 'test-fake' } }), /backend\.type "test-fake": "vxlan" or "host-gw"/);
  });

  it('the interface imports no backend, the backends not each other; the agent takes them from the index', () => {
    for (const f of ['backend.ts', 'registry.ts']) {
      const bad = importsOf(`pkg/agent/backend/${f}`).filter((i) => /^\.\/(vxlan|host-gw|index)$/.test(i));
      assert.deepEqual(bad, [], `${f} imports an implementation`);
    }
    assert.ok(!importsOf('pkg/agent/backend/vxlan.ts').includes('./host-gw'));
    assert.ok(!importsOf('pkg/agent/backend/host-gw.ts').includes('./vxlan'));
    assert.deepEqual(importsOf('pkg/agent/backend/index.ts').filter((i) => i === './vxlan' || i === './host-gw'), ['./vxlan', './host-gw']);
    assert.ok(importsOf('pkg/agent/agent.ts').includes('./backend'), 'agent.ts imports the backend index');
  });

  it('the agent and the datastores know nothing of VXLAN: the lease carries opaque backend data', () => {
    const files = ['pkg/agent/agent.ts', 'pkg/agent/lease.ts', ...fs.readdirSync(path.join(root, 'pkg/datastore')).map((f) => `pkg/datastore/${f}`)];
    for (const f of files) {
      const hits = src(f).split('\n').map((l, i) => [i + 1, l] as const).filter(([, l]) => /vxlan|vtep/i.test(l));
      assert.deepEqual(hits, [], `${f} mentions VXLAN`);
    }
  });
});
