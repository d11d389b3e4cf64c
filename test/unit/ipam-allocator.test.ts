import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CniError, Code } from '../../pkg/cni/errors';
import { mustParseIP } from '../../pkg/ip/ip';
import { Allocator } from '../../pkg/ipam/allocator';
import { parseIpamConfig } from '../../pkg/ipam/config';
import { FileStore } from '../../pkg/ipam/file-store';
import { matchPrevResult } from '../../pkg/ipam/range';
import type { Owner } from '../../pkg/ipam/store';

const own = (i: number | string, ifName = 'eth0'): Owner => ({ containerId: `c${i}`, ifName });

function rejectsWith(code: number, ...parts: string[]) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof CniError, String(e));
    assert.equal(e.code, code, e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `${JSON.stringify(e.message)} should contain ${p}`);
    return true;
  };
}

describe('ipam allocator over the file store', () => {
  let dataDir: string;
  let stores: FileStore[];
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-ipam-'));
    stores = [];
  });
  afterEach(async () => {
    for (const s of stores) await s.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  function alloc(ipam: Record<string, unknown>): Allocator {
    const cfg = parseIpamConfig({ name: 'net', ipam: { dataDir, ...ipam } });
    const store = new FileStore(cfg.dataDir, cfg.network);
    stores.push(store);
    return new Allocator(cfg, store);
  }
  const ips = async (a: Allocator, o: Owner, req: string[] = []): Promise<string[]> =>
    (await a.allocate(o, req.map(mustParseIP))).map((x) => `${x.ip}/${x.prefix}${x.gateway ? ' gw ' + x.gateway : ''}`);

  it('allocates round-robin, skipping the gateway, and returns the subnet prefix and gateway', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/29' }]] });
    assert.deepEqual(await ips(a, own(1)), ['10.0.0.2/29 gw 10.0.0.1']);
    assert.deepEqual(await ips(a, own(2)), ['10.0.0.3/29 gw 10.0.0.1']);
    await a.release(own(1));
    // round-robin: .2 is free again, but the next address after the last reserved comes first
    assert.deepEqual(await ips(a, own(3)), ['10.0.0.4/29 gw 10.0.0.1']);
    assert.deepEqual(await ips(a, own(4)), ['10.0.0.5/29 gw 10.0.0.1']);
    assert.deepEqual(await ips(a, own(5)), ['10.0.0.6/29 gw 10.0.0.1']); // .7 broadcast never given
    assert.deepEqual(await ips(a, own(6)), ['10.0.0.2/29 gw 10.0.0.1']); // wrapped
    await assert.rejects(a.allocate(own(7)), rejectsWith(Code.AddressUnavailable, 'no free address in range set 0', '10.0.0.0/29'));
  });

  it('honours rangeStart/rangeEnd, exclude and a gateway inside the range', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.0.10', rangeEnd: '10.0.0.15', gateway: '10.0.0.11' }]], exclude: ['10.0.0.12/31', '10.0.0.14'] });
    assert.deepEqual(await ips(a, own(1)), ['10.0.0.10/24 gw 10.0.0.11']);
    assert.deepEqual(await ips(a, own(2)), ['10.0.0.15/24 gw 10.0.0.11']);
    await assert.rejects(a.allocate(own(3)), rejectsWith(Code.AddressUnavailable, 'no free address'));
  });

  it('walks several ranges of a set in order and wraps', async () => {
    const a = alloc({ ranges: [[
      { subnet: '10.0.0.0/24', rangeStart: '10.0.0.10', rangeEnd: '10.0.0.11' },
      { subnet: '10.0.1.0/24', rangeStart: '10.0.1.10', rangeEnd: '10.0.1.10' },
    ]] });
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await ips(a, own(i)))[0]);
    assert.deepEqual(got, ['10.0.0.10/24 gw 10.0.0.1', '10.0.0.11/24 gw 10.0.0.1', '10.0.1.10/24 gw 10.0.1.1']);
    await a.release(own(0));
    assert.deepEqual(await ips(a, own(9)), ['10.0.0.10/24 gw 10.0.0.1']);
  });

  it('gives one address per range set, IPv4 and IPv6, never the IPv6 ::0', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: 'fd00:1::/64', gateway: 'fd00:1::ff' }]] });
    assert.deepEqual(await ips(a, own(1)), ['10.0.0.2/24 gw 10.0.0.1', 'fd00:1::1/64 gw fd00:1::ff']);
    assert.deepEqual(await ips(a, own(2)), ['10.0.0.3/24 gw 10.0.0.1', 'fd00:1::2/64 gw fd00:1::ff']);
  });

  it('a repeated ADD returns the same addresses; DEL is idempotent and exact', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: 'fd00::/120' }]] });
    const first = await ips(a, own(1));
    assert.deepEqual(await ips(a, own(1)), first);
    const other = await ips(a, own(1, 'eth1'));
    assert.notDeepEqual(other, first);
    assert.deepEqual(await a.release(own(1)), ['10.0.0.2', 'fd00::2']);
    assert.deepEqual(await a.release(own(1)), []);
    assert.deepEqual(await a.release(own('never')), []);
    await a.check(own(1, 'eth1'));
    assert.deepEqual((await a.store.reservedIps()).sort(), ['10.0.0.3', 'fd00::3']);
  });

  it('static requests: anywhere in the subnet, taken → 102 naming the owner, outside → 102', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.0.100', rangeEnd: '10.0.0.150' }]], exclude: ['10.0.0.7'] });
    assert.deepEqual(await ips(a, own(1), ['10.0.0.5']), ['10.0.0.5/24 gw 10.0.0.1']);
    await assert.rejects(a.allocate(own(2), [mustParseIP('10.0.0.5')]), rejectsWith(Code.AddressUnavailable, '10.0.0.5', 'already reserved by container c1 (eth0)'));
    await assert.rejects(a.allocate(own(2), [mustParseIP('10.9.0.5')]), rejectsWith(Code.AddressUnavailable, '10.9.0.5', 'outside every range', '10.0.0.0/24'));
    await assert.rejects(a.allocate(own(2), [mustParseIP('10.0.0.1')]), rejectsWith(Code.AddressUnavailable, 'gateway'));
    await assert.rejects(a.allocate(own(2), [mustParseIP('10.0.0.255')]), rejectsWith(Code.AddressUnavailable, 'broadcast'));
    await assert.rejects(a.allocate(own(2), [mustParseIP('10.0.0.0')]), rejectsWith(Code.AddressUnavailable, 'network address'));
    await assert.rejects(a.allocate(own(2), [mustParseIP('10.0.0.7')]), rejectsWith(Code.AddressUnavailable, 'ipam.exclude'));
    await assert.rejects(a.allocate(own(2), [mustParseIP('10.0.0.8'), mustParseIP('10.0.0.9')]), rejectsWith(Code.AddressUnavailable, 'same range set'));
    // a static request does not move the round-robin cursor
    assert.deepEqual(await ips(a, own(3)), ['10.0.0.100/24 gw 10.0.0.1']);
    // a failed ADD leaves nothing behind
    assert.deepEqual((await a.store.reservedIps()).sort(), ['10.0.0.100', '10.0.0.5']);
  });

  it('a repeated ADD with a different static request moves the attachment', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/24' }]] });
    await ips(a, own(1));
    assert.deepEqual(await ips(a, own(1), ['10.0.0.9']), ['10.0.0.9/24 gw 10.0.0.1']);
    assert.deepEqual(await a.store.reservedIps(), ['10.0.0.9']);
  });

  it('a failure in a later range set rolls back the earlier ones', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.1.0.0/30' }]] });
    await ips(a, own(1));
    await assert.rejects(a.allocate(own(2)), rejectsWith(Code.AddressUnavailable, 'range set 1'));
    assert.deepEqual((await a.store.reservedIps()).sort(), ['10.0.0.2', '10.1.0.2']);
    assert.equal(await a.store.getAttachment(own(2)), null);
  });

  it('CHECK verifies ownership and prevResult', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/24' }]] });
    // What the IPAM adapter (pkg/ipam/plugin.ts) does for CHECK: the backend's check, then prevResult.
    const check = async (o: Owner, prev?: string[]): Promise<void> => {
      const held = await a.check(o);
      if (prev) matchPrevResult(a.cfg.rangeSets, o, held, prev);
    };
    await ips(a, own(1));
    await check(own(1), ['10.0.0.2/24']);
    await assert.rejects(check(own(1), ['10.0.0.3/24']), rejectsWith(Code.Conflict, '10.0.0.2', 'missing from prevResult'));
    await assert.rejects(check(own(1), ['10.0.0.2/24', '10.0.0.9/24']), rejectsWith(Code.Conflict, '10.0.0.9'));
    await check(own(1), ['10.0.0.2/24', '192.168.9.9/24']); // others' addresses are not ours to judge
    await assert.rejects(a.check(own(2)), rejectsWith(Code.UnknownContainer, 'c2'));
    fs.rmSync(path.join(dataDir, 'net', 'ips', '10.0.0.2'));
    await assert.rejects(a.check(own(1)), rejectsWith(Code.Conflict, 'not reserved any more'));
  });

  it('STATUS counts free addresses per range', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/29' }], [{ subnet: 'fd00::/64' }]], exclude: ['10.0.0.6'] });
    await ips(a, own(1));
    const st = await a.status();
    assert.deepEqual(st.map((s) => [s.subnet, s.size, s.free]), [['10.0.0.0/29', '4', '3'], ['fd00::/64', String(2n ** 64n - 2n), String(2n ** 64n - 3n)]]);
    assert.deepEqual(await a.exhaustedSets(st), []);
    for (let i = 2; i <= 4; i++) await ips(a, own(i));
    assert.deepEqual(await a.exhaustedSets(await a.status()), [0]);
  });

  it('probes past many taken addresses by listing once', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.0.0.0/22' }]] });
    // 300 addresses taken behind the cursor's back
    for (let i = 2; i < 302; i++) assert.ok(await a.store.reserve(`10.0.${i >> 8}.${i & 255}`, own('x' + i)));
    assert.deepEqual(await ips(a, own(1)), ['10.0.1.46/22 gw 10.0.0.1']);
  });
});
