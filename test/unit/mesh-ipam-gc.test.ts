// The pod GC of knit-mesh-ipam (pkg/agent/ipam-gc.ts, the mesh part): the verdicts (a container
// whose host link is gone is stale; a service's VIP or LB address, a macvlan network's attachment
// and one whose link is there are not), two sightings `grace` apart with the same addresses
// before a release, and a pass releasing the address and the endpoint record. The host links are
// given as their parsed aliases (what hostAttachments reads from the kernel in the lab test).
import assert from 'node:assert/strict';
import { judgeMesh, meshGcPass, MeshStaleTracker, type MeshGcTarget } from '../../pkg/agent/ipam-gc';
import type { AttachmentId } from '../../pkg/iface/attachment';
import type { Owner } from '../../pkg/ipam/store';

const att = (network: string, containerId: string, ifName: string, ips: string[]): { network: string; owner: Owner; ips: string[] } => ({ network, owner: { containerId, ifName }, ips });
const drivers: Record<string, string> = { app: 'overlay', br: 'bridge', mv: 'macvlan' };

describe('mesh pod GC', () => {
  it('judges by host links: gone is stale; a link present, a service owner, a macvlan network or a network gone are not', () => {
    const links: AttachmentId[] = [{ network: 'app', containerId: 'alive', ifName: 'eth0' }];
    const j = judgeMesh([
      att('app', 'alive', 'eth0', ['10.0.0.2']), att('app', 'dead', 'eth0', ['10.0.0.3']), att('br', 'dead2', 'eth1', ['10.1.0.3']),
      att('app', 'alive', 'eth1', ['10.0.0.4']), att('app', 'vip-api.0123456789ab', 'vip', ['10.0.0.5']), att('app', 'lb-h1', 'lb', ['10.0.0.6']),
      att('mv', 'm', 'eth0', ['10.2.0.2']), att('old', 'o', 'eth0', ['10.3.0.2']),
    ], links, (n) => drivers[n]);
    assert.deepEqual(j.map((x) => [x.owner.containerId, x.owner.ifName, x.stale]), [
      ['alive', 'eth0', false], ['dead', 'eth0', true], ['dead2', 'eth1', true], ['alive', 'eth1', true],
      ['vip-api.0123456789ab', 'vip', false], ['lb-h1', 'lb', false], ['m', 'eth0', false], ['o', 'eth0', false],
    ]);
    assert.match(j[1]!.reason, /container gone: no host link of dead \(eth0\)/);
    assert.match(j[6]!.reason, /a macvlan network: no host link to look at/);
  });

  it('confirms only a second sighting at least grace later with the same addresses', () => {
    const t = new MeshStaleTracker(1000);
    const s = (ips: string[]) => judgeMesh([att('app', 'd', 'eth0', ips)], [], () => 'overlay');
    assert.equal(t.confirm(s(['10.0.0.3']), 0).length, 0);
    assert.equal(t.confirm(s(['10.0.0.3']), 500).length, 0, 'too soon');
    assert.equal(t.confirm(s(['10.0.0.9']), 1500).length, 0, 'other addresses: a new attachment, starts over');
    assert.equal(t.confirm(s(['10.0.0.9']), 2600).length, 1);
    assert.equal(t.pending, 0);
    assert.equal(t.confirm([], 3000).length, 0);
  });

  it('a pass releases what is confirmed and drops its endpoint; dry-run releases nothing', async () => {
    let held = [att('app', 'dead', 'eth0', ['10.0.0.3']), att('app', 'alive', 'eth0', ['10.0.0.2'])];
    const dropped: string[] = [];
    const target: MeshGcTarget = {
      attachments: () => held,
      release: async (n, o) => { const r = held.filter((a) => a.network === n && a.owner.containerId === o.containerId); held = held.filter((a) => !r.includes(a)); return r.flatMap((a) => a.ips); },
      driverOf: (n) => drivers[n],
      dropEndpoint: (n, o) => dropped.push(`${n}/${o.containerId}/${o.ifName}`),
    };
    const links = (): AttachmentId[] => [{ network: 'app', containerId: 'alive', ifName: 'eth0' }];
    const t = new MeshStaleTracker(0);
    assert.equal((await meshGcPass(target, t, { now: 0, links, dryRun: true })).confirmed.length, 0);
    const dry = await meshGcPass(target, t, { now: 1, links, dryRun: true });
    assert.equal(dry.confirmed.length, 1);
    assert.equal(held.length, 2, 'dry-run released nothing');
    await meshGcPass(target, t, { now: 2, links });
    const p = await meshGcPass(target, t, { now: 3, links });
    assert.deepEqual(p.confirmed.map((x) => x.owner.containerId), ['dead']);
    assert.deepEqual(held.map((a) => a.owner.containerId), ['alive']);
    assert.deepEqual(dropped, ['app/dead/eth0']);
  });
});
