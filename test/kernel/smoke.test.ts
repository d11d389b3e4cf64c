// Proves the kernel lane with iproute2 only: two lab hosts on an underlay switch, an 802.1Q
// sub-interface (vlan 100) on each host's uplink, macvlan children in pod namespaces, ping.
// An untagged pod in the same subnet must not be reached: the traffic really is tagged.
import assert from 'node:assert/strict';
import { Lab, type Host, type Netns } from '../lab/lab';
import { requireVlanKernel } from './lane';

describe('kernel lane smoke: 802.1Q + macvlan with ip only', function () {
  this.timeout(120_000);
  let lab: Lab;

  before(function () {
    requireVlanKernel(this);
    lab = new Lab();
  });
  after(async () => { await lab?.cleanup(); });

  async function macvlanPod(host: Host, parent: string, name: string, cidr: string): Promise<Netns> {
    const pod = await lab.pod(name);
    // Named eth1 in the pod: 6.1 looks a new link's name up in the namespace that sends the
    // request, even when IFLA_NET_NS_FD places it elsewhere, so "eth0" collides with the host's.
    await lab.ip(host, ['link', 'add', 'link', parent, 'name', 'eth1', 'netns', pod.name, 'type', 'macvlan', 'mode', 'bridge']);
    await lab.ip(pod, ['addr', 'add', cidr, 'dev', 'eth1']);
    await lab.ip(pod, ['link', 'set', 'eth1', 'up']);
    return pod;
  }

  it('pods on vlan 100 sub-interfaces of two hosts ping each other; an untagged pod is not reached', async () => {
    const sw = await lab.switch();
    const [a, b] = [await lab.host('a', sw), await lab.host('b', sw)];
    for (const h of [a, b]) {
      await lab.ip(h, ['link', 'add', 'link', 'eth0', 'name', 'eth0.100', 'type', 'vlan', 'id', '100']);
      await lab.ip(h, ['link', 'set', 'eth0.100', 'up']);
    }
    const [vlan] = (await lab.ipJson<any[]>(a, ['-d', 'link', 'show', 'eth0.100']));
    assert.equal(vlan.linkinfo?.info_kind, 'vlan');
    assert.equal(vlan.linkinfo?.info_data?.id, 100);
    assert.equal(vlan.linkinfo?.info_data?.protocol, '802.1Q');

    const pa = await macvlanPod(a, 'eth0.100', 'pa', '10.100.0.11/24');
    const pb = await macvlanPod(b, 'eth0.100', 'pb', '10.100.0.12/24');
    assert.ok(await lab.ping(pa, '10.100.0.12'), 'pa -> pb over vlan 100');
    assert.ok(await lab.ping(pb, '10.100.0.11'), 'pb -> pa over vlan 100');

    // Same subnet, but untagged on b's uplink: must not hear vlan 100.
    await macvlanPod(b, 'eth0', 'pu', '10.100.0.13/24');
    assert.ok(!(await lab.ping(pa, '10.100.0.13')), 'an untagged pod answered a vlan 100 pod');
  });
});
