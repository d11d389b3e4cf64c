// knit-host-local DEL after an ADD killed between its reservation and its index (found by the
// kill -9 suite, test/integration/chaos.test.ts): the killed process's owner temp file (linked to
// each address it reserved) names the attachment, so DEL frees those addresses at once instead
// of leaving them to GC; a live writer's (an ADD still running) and other attachments' are left alone.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Allocator } from '../../pkg/ipam/allocator';
import { parseIpamConfig } from '../../pkg/ipam/config';
import { FileStore } from '../../pkg/ipam/file-store';
import type { Owner } from '../../pkg/ipam/store';

const deadPid = (): number => spawnSync('true').pid!;

describe('ipam file store: DEL after a killed ADD', () => {
  let dataDir: string;
  let dir: string;
  const cfg = (): ReturnType<typeof parseIpamConfig> => parseIpamConfig({ name: 'net', ipam: { dataDir, ranges: [[{ subnet: '10.0.0.0/29' }], [{ subnet: 'fd00::/120' }]] } });
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-ipam-kill-'));
    dir = path.join(dataDir, 'net');
  });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  /**
   * An ADD of `o` that reserved both families and died before writing its index: its store is
   * never closed, and its temp files carry the pid of a process that is gone (or `pid`).
   */
  async function killedAdd(o: Owner, pid = deadPid()): Promise<string[]> {
    const store = new FileStore(dataDir, 'net', { beforeIndex: () => { throw new Error('killed'); } });
    await assert.rejects(new Allocator(cfg(), store).allocate(o), /killed/);
    // allocate() rolled back on the throw; a SIGKILL does not: reserve again as it had.
    const ips = ['10.0.0.2', 'fd00::2'];
    for (const ip of ips) assert.ok(await store.reserve(ip, o));
    for (const f of fs.readdirSync(path.join(dir, 'tmp'))) {
      fs.renameSync(path.join(dir, 'tmp', f), path.join(dir, 'tmp', f.replace(/^\d+/, String(pid))));
    }
    return ips;
  }

  const reserved = (): string[] => fs.readdirSync(path.join(dir, 'ips')).sort();

  it('frees what the killed ADD reserved and removes its temp file; a repeated DEL is a no-op', async () => {
    const o = { containerId: 'c1', ifName: 'eth0' };
    const ips = await killedAdd(o);
    assert.deepEqual(reserved(), [...ips].sort());
    assert.equal(fs.existsSync(path.join(dir, 'attachments', 'c1:eth0')), false, 'no index was written');
    const store = new FileStore(dataDir, 'net');
    assert.deepEqual((await new Allocator(cfg(), store).release(o)).sort(), [...ips].sort());
    assert.deepEqual(reserved(), []);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
    assert.deepEqual(await new Allocator(cfg(), store).release(o), []);
    await store.close();
  });

  it('leaves the reservations of an ADD whose process still runs, and those of other attachments', async () => {
    const live = { containerId: 'live', ifName: 'eth0' };
    await killedAdd(live, process.pid);
    const other = { containerId: 'other', ifName: 'eth0' };
    const store = new FileStore(dataDir, 'net');
    assert.deepEqual(await new Allocator(cfg(), store).release(live), [], 'an ADD in flight keeps its addresses');
    assert.deepEqual(await new Allocator(cfg(), store).release(other), []);
    assert.equal(reserved().length, 2);
    await store.close();
  });

  it('with an index as well (killed after it): frees the addresses once and removes index and temp file', async () => {
    const o = { containerId: 'c2', ifName: 'net1' };
    const ips = await killedAdd(o);
    await new FileStore(dataDir, 'net').putAttachment(o, ips);
    const store = new FileStore(dataDir, 'net');
    assert.deepEqual((await new Allocator(cfg(), store).release(o)).sort(), [...ips].sort());
    assert.deepEqual(reserved(), []);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'attachments')), []);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
    await store.close();
  });
});
