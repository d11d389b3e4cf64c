// The lab itself: topologies come up, traffic flows between lab namespaces only, and
// cleanup (in-process and scripts/lab-clean) removes exactly the run's objects.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Lab, listLabNetns, requireRoot, run, RUN_PREFIX } from '../lab/lab';

describe('lab: netns topologies', function () {
  let lab: Lab;
  let rootLinksBefore: string;

  before(function () {
    requireRoot(this);
    rootLinksBefore = execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' });
    lab = new Lab();
  });
  after(async () => { await lab?.cleanup(); });

  it('two hosts on an underlay switch ping each other', async () => {
    const sw = await lab.switch();
    const a = await lab.host('a', sw, { address: '192.0.2.1/24' });
    const b = await lab.host('b', sw, { address: '192.0.2.2/24' });
    assert.equal(await lab.ping(a, '192.0.2.2'), true);
    assert.equal(await lab.ping(b, '192.0.2.1'), true);
    const ports = await lab.ipJson<Array<{ ifname: string; master?: string }>>(sw, ['link', 'show', 'master', 'br0']);
    assert.deepEqual(ports.map((p) => p.ifname).sort(), ['p-a', 'p-b']);
  });

  it('creates nothing in the root namespace', () => {
    assert.equal(execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' }), rootLinksBefore);
  });

  it('cleanup removes every namespace of the lab', async () => {
    const extra = new Lab();
    const ns = await extra.pod('gone');
    assert.ok(listLabNetns().includes(ns.name));
    // A process left running inside must not keep the namespace alive.
    await run('ip', ['netns', 'exec', ns.name, 'sh', '-c', 'sleep 60 >/dev/null 2>&1 &']);
    await extra.cleanup();
    assert.ok(!listLabNetns().includes(ns.name));
  });

  it('scripts/lab-clean removes only the given prefix', async () => {
    // Two foreign run prefixes, so the live namespaces of this run are not touched.
    const gone = `knt${RUN_PREFIX.endsWith('ffff') ? 'eeee' : 'ffff'}-leftover`;
    const kept = `knt${RUN_PREFIX.endsWith('dddd') ? 'cccc' : 'dddd'}-keep`;
    await run('ip', ['netns', 'add', gone]);
    await run('ip', ['netns', 'add', kept]);
    try {
      const out = await run('bash', ['scripts/lab-clean', gone.slice(0, 7)]);
      assert.match(out.stdout, /removed 1 namespace/);
      assert.deepEqual(listLabNetns(gone), []);
      assert.deepEqual(listLabNetns(kept), [kept]);
      const bad = await run('bash', ['scripts/lab-clean', 'eth0'], { allowFail: true });
      assert.equal(bad.code, 2);
      assert.deepEqual(listLabNetns(kept), [kept]);
    } finally {
      await run('ip', ['netns', 'del', gone], { allowFail: true });
      await run('ip', ['netns', 'del', kept], { allowFail: true });
    }
  });
});
