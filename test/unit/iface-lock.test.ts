// pkg/iface/lock.ts and parent-refs.ts: flock(2) exclusion between processes, a bounded wait
// (code 11), release when the holder dies, and a lock file its holder may delete.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { withFileLock } from '../../pkg/iface/lock';
import { ParentRefs } from '../../pkg/iface/parent-refs';
import { CniError } from '../../pkg/cni/errors';

/** A child process that takes the lock with the addon and holds it until killed. */
function holder(file: string): Promise<{ kill: () => void }> {
  const addon = path.resolve(__dirname, '../../build/Release/knit_netlink.node');
  const js = `const m={exports:{}};process.dlopen(m,${JSON.stringify(addon)});m.exports.flock(${JSON.stringify(file)},1000);process.stdout.write('held\\n');setInterval(()=>{},1000);`;
  const child = spawn(process.execPath, ['-e', js], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } });
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve({ kill: () => child.kill('SIGKILL') }));
    child.once('error', reject);
  });
}

describe('pkg/iface lock and parent reference counts', function () {
  this.timeout(10_000);
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-lock-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('runs the critical section and returns its value, creating the directory', () => {
    assert.equal(withFileLock(path.join(tmp, 'a/b/lock'), () => 42), 42);
  });

  it('times out with code 11 while another process holds it, and gets it once that process died', async () => {
    const file = path.join(tmp, 'held.lock');
    const h = await holder(file);
    const t0 = Date.now();
    assert.throws(() => withFileLock(file, () => 1, 150), (e: unknown) => e instanceof CniError && e.code === 11 && e.message.includes(file));
    assert.ok(Date.now() - t0 >= 140, 'waited the bounded time');
    h.kill();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(withFileLock(file, () => 'mine', 2000), 'mine');
  });

  it('refuses an asynchronous critical section', () => {
    assert.throws(() => withFileLock(path.join(tmp, 'async.lock'), (async () => 1) as unknown as () => number), /synchronous/);
  });

  it('ParentRefs: records, marks, and nothing left once unused', () => {
    const base = path.join(tmp, 'refs');
    const refs = new ParentRefs(base, 'ns1', 'eth0.100');
    const rec = { network: 'n', containerId: 'c1', ifName: 'eth0', netns: '/run/netns/x', parentNetns: null };
    refs.locked(() => {
      refs.add(rec);
      refs.add({ ...rec, containerId: 'c2' });
      refs.markCreated(7);
      refs.markPromisc();
    });
    assert.ok(refs.has(rec));
    assert.deepEqual(refs.get(rec), rec);
    assert.deepEqual(refs.list().map((r) => r.containerId).sort(), ['c1', 'c2']);
    assert.deepEqual(refs.created(), { ifindex: 7 });
    assert.deepEqual(ParentRefs.scan(base).map((r) => `${r.nsKey}/${r.parent}`), ['ns1/eth0.100']);
    refs.locked(() => {
      refs.remove(rec);
      refs.removeIfUnused();
    });
    assert.ok(fs.existsSync(refs.dir), 'kept while a record or mark remains');
    refs.locked(() => {
      refs.remove({ ...rec, containerId: 'c2' });
      refs.clearCreated();
      refs.clearPromisc();
      refs.removeIfUnused();
    });
    assert.deepEqual(fs.readdirSync(base), [], 'directory, lock file included, removed');
    // The next user recreates it as if new.
    refs.locked(() => refs.add(rec));
    assert.ok(refs.has(rec));
  });
});
