// A container's MAC derived from its IPv4 address (D28): the derivation, which conflists ask for
// it, and the rule knitd uses when two endpoint records claim one MAC or address (the newest
// remote one, a local one above all), in every order the records can arrive.
import assert from 'node:assert/strict';
import { DERIVED_MAC_PREFIX, macFromAddress } from '../../pkg/ip/mac';
import { normalizeMac } from '../../pkg/cni/args';
import { EntryOwners } from '../../pkg/network/owners';
import { renderConflist } from '../../pkg/network/conflist';
import { buildNetwork, type CreateRequest } from '../../pkg/network/spec';
import type { Endpoint } from '../../pkg/network/store';

describe('MAC from address', () => {
  it('is 02:6b and the four bytes of the first IPv4 address', () => {
    assert.equal(DERIVED_MAC_PREFIX, '02:6b');
    assert.equal(macFromAddress(['10.231.1.5/24']), '02:6b:0a:e7:01:05');
    assert.equal(macFromAddress(['192.168.0.255']), '02:6b:c0:a8:00:ff');
    assert.equal(macFromAddress(['0.0.0.1/8']), '02:6b:00:00:00:01');
    // Dual stack: the IPv4 address, wherever it is in the list; the first of several.
    assert.equal(macFromAddress(['fd00::5/64', '10.0.0.9/24', '10.0.1.9/24']), '02:6b:0a:00:00:09');
  });

  it('is a locally administered unicast MAC the plugins accept', () => {
    const mac = macFromAddress(['255.255.255.255/32'])!;
    const first = parseInt(mac.slice(0, 2), 16);
    assert.equal(first & 0x01, 0, 'unicast');
    assert.equal(first & 0x02, 0x02, 'locally administered');
    assert.equal(normalizeMac(mac), mac);
  });

  it('is none for an IPv6-only attachment (the kernel\'s random MAC, as before) or no address', () => {
    assert.equal(macFromAddress(['fd00::5/64']), undefined);
    assert.equal(macFromAddress(['::ffff:10.0.0.1/128']), undefined);
    assert.equal(macFromAddress([]), undefined);
    assert.equal(macFromAddress(['not-an-address']), undefined);
  });

  it('is asked for by the conflists of overlay and bridge networks, not macvlan', () => {
    const node = { nodeName: 'n1', etcd: { endpoints: ['http://10.0.0.1:2379'], prefix: '/knit', timeoutMs: 5000 }, runDir: '/run/knit' };
    const main = (req: CreateRequest): Record<string, unknown> =>
      (renderConflist(buildNetwork(req, [], new Date(0), 'a'.repeat(64)), node).plugins as Array<Record<string, unknown>>)[0]!;
    assert.equal(main({ name: 'o', driver: 'overlay' }).macFromAddress, true);
    assert.equal(main({ name: 'b', driver: 'bridge' }).macFromAddress, true);
    assert.equal(main({ name: 'm', driver: 'macvlan', opts: ['parent=eth0'] }).macFromAddress, undefined);
  });
});

describe('FDB and neighbour entry owners (records sharing a MAC or address)', () => {
  const ep = (node: string, id: string, created: string, mac = '02:6b:0a:00:00:05', ip = '10.0.0.5/24'): Endpoint => ({
    network: 'app', node, nodeIp: `192.168.70.${node.slice(-1)}`, containerId: id, ifName: 'eth0', mac, ips: [ip], created,
  });
  const A = ep('n1', 'a', '2026-01-01T00:00:00.000Z');
  const B = ep('n2', 'b', '2026-01-01T00:05:00.000Z');
  const key = (e: Endpoint): string => `/knit/endpoints/app/${e.node}/${e.containerId}/eth0`;

  it('A on node 1 replaced by B on node 2 with its address and MAC: node 3 sends to node 2, in either order', () => {
    for (const order of [['putB', 'delA'], ['delA', 'putB']]) {
      const o = new EntryOwners('n3');
      o.set(key(A), undefined, A);
      assert.equal(o.fdb('app', A.mac), '192.168.70.1');
      for (const step of order) {
        if (step === 'putB') o.set(key(B), undefined, B); else o.set(key(A), A, undefined);
        if (step === 'putB') assert.equal(o.fdb('app', A.mac), '192.168.70.2', `${order}: B is newer than A`);
      }
      assert.equal(o.fdb('app', '02:6B:0A:00:00:05'), '192.168.70.2', `${order}: the FDB entry is B's (MAC case does not matter)`);
      assert.equal(o.neigh('app', '10.0.0.5'), '02:6b:0a:00:00:05', `${order}: the neighbour entry is B's`);
      o.set(key(B), B, undefined);
      assert.equal(o.fdb('app', A.mac), undefined, 'none left: no entry');
      assert.equal(o.neigh('app', '10.0.0.5'), undefined);
    }
  });

  it('a replayed put of the older record does not take the entry back', () => {
    const o = new EntryOwners('n3');
    o.set(key(B), undefined, B);
    o.set(key(A), undefined, A);
    assert.equal(o.fdb('app', A.mac), '192.168.70.2');
    // The same created time: the record key decides, the same way on every node and pass.
    const B2 = { ...B, created: A.created };
    o.set(key(B), B, B2);
    assert.equal(o.fdb('app', A.mac), key(B2) > key(A) ? '192.168.70.2' : '192.168.70.1');
  });

  it('a local endpoint wins: no remote entry shadows it, and its going brings the remote one back', () => {
    const L = ep('n3', 'l', '2025-01-01T00:00:00.000Z');
    const o = new EntryOwners('n3');
    o.set(key(B), undefined, B);
    o.set(key(L), undefined, L);
    assert.equal(o.fdb('app', L.mac), undefined, 'the local container is on the bridge: no FDB entry to another node');
    assert.equal(o.neigh('app', '10.0.0.5'), undefined, 'nor a proxy ARP answer for its address');
    o.set(key(L), L, undefined);
    assert.equal(o.fdb('app', L.mac), '192.168.70.2');
  });

  it('MAC and address resolve on their own; networks never mix', () => {
    const o = new EntryOwners('n3');
    const C = ep('n1', 'c', '2026-01-01T00:00:00.000Z', '02:00:00:00:00:01', '10.0.0.7/24');
    const D = ep('n2', 'd', '2026-01-02T00:00:00.000Z', '02:00:00:00:00:02', '10.0.0.7/24');
    const other = { ...C, network: 'db' };
    o.set(key(C), undefined, C);
    o.set(key(D), undefined, D);
    o.set(`/knit/endpoints/db/n1/c/eth0`, undefined, other);
    assert.equal(o.neigh('app', '10.0.0.7'), '02:00:00:00:00:02', 'the newer record answers for the address');
    assert.equal(o.fdb('app', '02:00:00:00:00:01'), '192.168.70.1', 'the older one\'s MAC still leads to its node');
    o.set(key(D), D, undefined);
    assert.equal(o.neigh('app', '10.0.0.7'), '02:00:00:00:00:01');
    o.set(key(C), C, undefined);
    assert.equal(o.neigh('app', '10.0.0.7'), undefined);
    assert.equal(o.neigh('db', '10.0.0.7'), '02:00:00:00:00:01', 'network db keeps its own');
    o.clear();
    assert.equal(o.neigh('db', '10.0.0.7'), undefined);
  });
});
