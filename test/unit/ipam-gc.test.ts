import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CniError, Code } from '../../pkg/cni/errors';
import { Allocator } from '../../pkg/ipam/allocator';
import { parseIpamConfig } from '../../pkg/ipam/config';
import { FileStore } from '../../pkg/ipam/file-store';
import type { Owner } from '../../pkg/ipam/store';

const own = (i: number | string, ifName = 'eth0'): Owner => ({ containerId: `c${i}`, ifName });
const deadPid = (): number => spawnSync('true').pid!;
const old = new Date(Date.now() - 3600_000);

describe('ipam file store: crash safety and GC', () => {
  let dataDir: string;
  let dir: string;
  let store: FileStore;
  let a: Allocator;
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-ipam-gc-'));
    dir = path.join(dataDir, 'net');
    const cfg = parseIpamConfig({ name: 'net', ipam: { dataDir, ranges: [[{ subnet: '10.0.0.0/29' }]] } });
    store = new FileStore(dataDir, 'net');
    a = new Allocator(cfg, store);
  });
  afterEach(async () => {
    await store.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  /** A reservation file as a crashed ADD (of `pid`) leaves it: no index. */
  function orphan(ip: string, o: Owner, pid: number, mtime?: Date): string {
    fs.mkdirSync(path.join(dir, 'ips'), { recursive: true });
    const f = path.join(dir, 'ips', ip);
    fs.writeFileSync(f, `${o.containerId}\n${o.ifName}\n${pid}\n`);
    if (mtime) fs.utimesSync(f, mtime, mtime);
    return f;
  }

  it('writes state 0600 in 0700 directories and leaves no temp files', async () => {
    await a.allocate(own(1));
    await store.close();
    for (const d of [dir, path.join(dir, 'ips'), path.join(dir, 'attachments'), path.join(dir, 'tmp')]) {
      assert.equal(fs.statSync(d).mode & 0o777, 0o700, d);
    }
    for (const f of ['ips/10.0.0.2', 'attachments/c1:eth0', 'last-reserved.0']) assert.equal(fs.statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
    assert.equal(fs.readFileSync(path.join(dir, 'ips', '10.0.0.2'), 'utf8').split('\n').slice(0, 2).join('|'), 'c1|eth0');
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'attachments', 'c1:eth0'), 'utf8')).ips, ['10.0.0.2']);
  });

  it('reserve is exclusive: the second claim of one address fails', async () => {
    assert.equal(await store.reserve('10.0.0.5', own(1)), true);
    assert.equal(await store.reserve('10.0.0.5', own(2)), false);
    assert.equal(await store.reserve('10.0.0.5', own(1)), false);
    assert.deepEqual((await store.get('10.0.0.5'))?.owner, own(1));
  });

  it('refuses unsafe ids and addresses in file names', async () => {
    for (const o of [own('/../x'), { containerId: '../x', ifName: 'eth0' }, own(1, 'a/b'), own(1, '..'), own(1, 'a:b'), own(1, '')]) {
      await assert.rejects(store.reserve('10.0.0.5', o), (e: unknown) => e instanceof CniError && e.code === Code.InvalidEnvironment);
      await assert.rejects(store.getAttachment(o), (e: unknown) => e instanceof CniError);
    }
    await assert.rejects(store.reserve('../../etc/passwd', own(1)), CniError);
    await assert.rejects(store.reserve('10.0.0.05', own(1)), CniError);
  });

  it('GC reclaims a reservation without index whose writer died, not one still in flight', async () => {
    await a.allocate(own(1)); // .2 with index
    orphan('10.0.0.3', own(2), deadPid(), old);
    orphan('10.0.0.4', own(3), process.pid); // alive writer, fresh: maybe mid-ADD
    orphan('10.0.0.5', own(4), process.pid, old); // past the grace period: pid was reused
    fs.writeFileSync(path.join(dir, 'ips', '10.0.0.6'), ''); // unreadable (crash before data hit disk)
    fs.utimesSync(path.join(dir, 'ips', '10.0.0.6'), old, old);
    const r = await a.gc(null);
    assert.deepEqual(r.released.map((x) => x.ip).sort(), ['10.0.0.3', '10.0.0.5', '10.0.0.6']);
    assert.deepEqual((await store.reservedIps()).sort(), ['10.0.0.2', '10.0.0.4']);
  });

  it('removes temp files of dead or stale writers only', async () => {
    fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
    const dead = path.join(dir, 'tmp', `${deadPid()}.1.abc`);
    fs.writeFileSync(dead, 'x');
    fs.utimesSync(dead, old, old);
    const live = path.join(dir, 'tmp', `1.1.abc`); // pid 1 lives; fresh
    fs.writeFileSync(live, 'x');
    const r = await a.gc(null);
    assert.equal(r.tempRemoved, 1);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), ['1.1.abc']);
  });

  it('an exhausted ADD reclaims orphans instead of failing forever', async () => {
    const pid = deadPid();
    for (const ip of ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']) orphan(ip, own('gone'), pid, old);
    const got = await a.allocate(own(1));
    assert.equal(got.length, 1);
    assert.deepEqual(await store.reservedIps(), [got[0]!.ip]);
  });

  it('an orphan of the same attachment is adopted by its static re-ADD', async () => {
    orphan('10.0.0.4', own(1), process.pid);
    const got = await a.allocate(own(1), [{ family: 4, bytes: Buffer.from([10, 0, 0, 4]) }]);
    assert.equal(got[0]!.ip, '10.0.0.4');
  });

  it('GC with valid attachments releases the others and repairs indexes', async () => {
    await a.allocate(own(1));
    await a.allocate(own(2));
    await a.allocate(own(3));
    // index without reservation: c3 lost its file; c3 is valid, so GC takes the address back
    fs.rmSync(path.join(dir, 'ips', '10.0.0.4'));
    const r = await a.gc([own(1), own(3), own(99)]);
    assert.deepEqual(r.released.map((x) => [x.ip, x.reason]), [['10.0.0.3', 'not-valid']]);
    assert.equal(r.indexesRemoved, 1);
    assert.deepEqual((await store.reservedIps()).sort(), ['10.0.0.2', '10.0.0.4']);
    await a.check(own(3));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'attachments')).sort(), ['c1:eth0', 'c3:eth0']);
  });

  it('an index whose address went to someone else is repaired by a repeated ADD', async () => {
    await a.allocate(own(1)); // .2
    fs.rmSync(path.join(dir, 'ips', '10.0.0.2'));
    await store.reserve('10.0.0.2', own(2));
    const got = await a.allocate(own(1));
    assert.notEqual(got[0]!.ip, '10.0.0.2');
    assert.deepEqual((await store.get('10.0.0.2'))?.owner, own(2)); // not released by c1's stale index
    await a.release(own(1));
    assert.deepEqual((await store.get('10.0.0.2'))?.owner, own(2));
  });

  it('GC without a valid list drops stale index entries but keeps live ones', async () => {
    await a.allocate(own(1));
    fs.rmSync(path.join(dir, 'ips', '10.0.0.2'));
    fs.utimesSync(path.join(dir, 'attachments', 'c1:eth0'), old, old);
    const r = await a.gc(null);
    assert.equal(r.indexesRemoved, 1);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'attachments')), []);
  });
});
