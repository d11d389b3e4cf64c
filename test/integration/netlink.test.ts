// pkg/netlink against the kernel, inside lab namespaces only, with `ip -json` / `bridge
// -json` as the oracle for every operation.
// Every assert.ok carries a message: without one, Node re-reads the source to describe the
// failure, which can spin forever on tsx-transformed files.
import assert from 'node:assert/strict';
import { Lab, Netns, requireRoot } from '../lab/lab';
import * as nl from '../../pkg/netlink';
import { Netlink, NetlinkError } from '../../pkg/netlink';

const MAC_HOST = '02:00:00:aa:00:01';
const MAC_POD = '02:00:00:bb:00:01';

/** Asserts fn throws a NetlinkError with this code (and returns it for more checks). */
function throwsNl(fn: () => unknown, code: string): NetlinkError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof NetlinkError, `expected NetlinkError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

async function waitFor<T>(what: string, probe: () => T | undefined, ms = 3000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('pkg/netlink (integration, netns lab)', function () {
  const lab = new Lab();
  let A: Netns; // "host"
  let B: Netns; // "pod"
  let hA: Netlink;
  let hB: Netlink;

  before(async function () {
    requireRoot(this);
    A = await lab.netns('nla');
    B = await lab.netns('nlb');
    hA = Netlink.open(A.path);
    hB = Netlink.open(B.path);
  });

  after(async () => {
    hA?.close();
    hB?.close();
    await lab.cleanup();
  });

  describe('links', () => {
    it('creates a veth whose peer is born inside another netns, named, with MAC and MTU', async () => {
      nl.linkAdd(hA, {
        kind: 'veth', name: 'veth0', mac: MAC_HOST, mtu: 1400, up: true,
        peer: { name: 'eth0', mac: MAC_POD, mtu: 1400, netns: B.path },
      });
      const [pod] = await lab.ipJson(B, ['link', 'show', 'eth0']);
      assert.equal(pod.ifname, 'eth0');
      assert.equal(pod.address, MAC_POD);
      assert.equal(pod.mtu, 1400);
      const [host] = await lab.ipJson(A, ['link', 'show', 'veth0']);
      assert.equal(host.address, MAC_HOST);
      assert.equal(host.mtu, 1400);
      assert.ok(host.flags.includes('UP'), 'host.flags.includes(\'UP\')');

      const l = nl.linkGet(hA, 'veth0');
      assert.equal(l.index, host.ifindex);
      assert.equal(l.kind, 'veth');
      assert.equal(l.mac, MAC_HOST);
      assert.equal(l.mtu, 1400);
      assert.equal(l.up, true);
      assert.equal(l.link, pod.ifindex, 'IFLA_LINK is the peer index in the pod netns');
      assert.equal(typeof l.linkNetnsId, 'number');
      const p = nl.linkGet(hB, pod.ifindex);
      assert.equal(p.name, 'eth0');
      assert.equal(p.link, host.ifindex);
      assert.equal(p.up, false);
      assert.deepEqual(nl.linkList(hB).map((x) => x.name).sort(), ['eth0', 'lo']);
    });

    it('reports EEXIST with the operation and errno when the name is taken', () => {
      const e = throwsNl(() => nl.linkAdd(hA, { kind: 'veth', name: 'veth0', peer: { name: 'x0' } }), 'EEXIST');
      assert.equal(e.errno, 17);
      assert.equal(e.op, 'RTM_NEWLINK veth veth0');
      assert.match(e.message, /^RTM_NEWLINK veth veth0: File exists \(EEXIST\)/);
      assert.ok(nl.isExist(e), 'nl.isExist(e)');
    });

    it('surfaces an unsupported link kind (vlan without 8021q) as EOPNOTSUPP with a clear message', async () => {
      const parent = nl.linkGet(hA, 'veth0').index;
      try {
        nl.linkAdd(hA, { kind: 'vlan', name: 'veth0.100', parent, vlanId: 100 });
      } catch (err) {
        assert.ok(err instanceof NetlinkError, 'err instanceof NetlinkError');
        assert.equal(err.errno, 95);
        assert.equal(err.code, 'EOPNOTSUPP');
        assert.match(err.message, /^RTM_NEWLINK vlan veth0\.100: Operation not supported \(EOPNOTSUPP\)/);
        return;
      }
      // A kernel with 8021q (the VLAN kernel lane): then the link must be right.
      const [v] = await lab.ipJson(A, ['-d', 'link', 'show', 'veth0.100']);
      assert.equal(v.linkinfo.info_data.id, 100);
      nl.linkDel(hA, 'veth0.100');
    });

    it('creates a bridge with MAC and MTU, enslaves a port, sets hairpin/learning, then removes it', async () => {
      nl.linkAdd(hA, { kind: 'bridge', name: 'br0', mac: '02:00:00:cc:00:01', mtu: 1400, up: true });
      const [br] = await lab.ipJson(A, ['-d', 'link', 'show', 'br0']);
      assert.equal(br.address, '02:00:00:cc:00:01');
      assert.equal(br.mtu, 1400);
      assert.equal(br.linkinfo.info_kind, 'bridge');
      assert.equal(nl.linkGet(hA, 'br0').kind, 'bridge');

      nl.linkSetMaster(hA, 'veth0', br.ifindex);
      nl.bridgePortSet(hA, 'veth0', { hairpin: true, learning: false });
      const [port] = await lab.ipJson(A, ['-d', 'link', 'show', 'veth0']);
      assert.equal(port.master, 'br0');
      assert.equal(port.linkinfo.info_slave_kind, 'bridge');
      assert.equal(port.linkinfo.info_slave_data.hairpin, true);
      assert.equal(port.linkinfo.info_slave_data.learning, false);
      const l = nl.linkGet(hA, 'veth0');
      assert.equal(l.master, br.ifindex);
      assert.deepEqual(l.bridgePort, { hairpin: true, learning: false });
      assert.deepEqual(nl.linkList(hA, { master: br.ifindex }).map((x) => x.name), ['veth0']);

      nl.bridgePortSet(hA, 'veth0', { hairpin: false, learning: true });
      const [port2] = await lab.ipJson(A, ['-d', 'link', 'show', 'veth0']);
      assert.equal(port2.linkinfo.info_slave_data.hairpin, false);
      assert.equal(port2.linkinfo.info_slave_data.learning, true);

      nl.linkSetNoMaster(hA, 'veth0');
      const [port3] = await lab.ipJson(A, ['link', 'show', 'veth0']);
      assert.equal(port3.master, undefined);
      assert.equal(nl.linkGet(hA, 'veth0').master, undefined);
    });

    it('creates a bridge port already enslaved and up in one request', async () => {
      const br = nl.linkGet(hA, 'br0').index;
      nl.linkAdd(hA, { kind: 'veth', name: 'vp1', master: br, up: true, peer: { name: 'vp1p' } });
      const [p] = await lab.ipJson(A, ['link', 'show', 'vp1']);
      assert.equal(p.master, 'br0');
      assert.ok(p.flags.includes('UP'), 'p.flags.includes(\'UP\')');
      nl.linkDel(hA, 'vp1');
    });

    it('sets up/down, MTU, MAC, promisc and name', async () => {
      nl.linkSet(hB, 'eth0', { up: true, mtu: 1380, mac: '02:00:00:bb:00:02', promisc: true });
      let [p] = await lab.ipJson(B, ['-d', 'link', 'show', 'eth0']);
      assert.ok(p.flags.includes('UP'), 'p.flags.includes(\'UP\')');
      assert.ok(p.flags.includes('PROMISC'), 'p.flags.includes(\'PROMISC\')');
      assert.equal(p.promiscuity, 1);
      assert.equal(p.mtu, 1380);
      assert.equal(p.address, '02:00:00:bb:00:02');
      const l = nl.linkGet(hB, 'eth0');
      assert.equal(l.promisc, true);
      assert.equal(l.operstate, p.operstate);

      nl.linkSetPromisc(hB, 'eth0', false);
      nl.linkSetDown(hB, 'eth0');
      nl.linkSetMtu(hB, 'eth0', 1400);
      nl.linkSetMac(hB, 'eth0', MAC_POD);
      [p] = await lab.ipJson(B, ['-d', 'link', 'show', 'eth0']);
      assert.ok(!p.flags.includes('UP'), '!p.flags.includes(\'UP\')');
      assert.ok(!p.flags.includes('PROMISC'), '!p.flags.includes(\'PROMISC\')');
      assert.equal(p.mtu, 1400);
      assert.equal(p.address, MAC_POD);

      nl.linkSet(hB, 'eth0', { name: 'eth9' });
      assert.equal(nl.linkFind(hB, 'eth0'), null);
      assert.equal((await lab.ipJson(B, ['link', 'show', 'eth9']))[0].ifname, 'eth9');
      nl.linkSet(hB, 'eth9', { name: 'eth0' });
      nl.linkSetUp(hB, 'eth0');
      assert.equal(nl.linkGet(hB, 'eth0').up, true);
    });

    it('creates a vxlan device (VNI, local, port, dev, learning off, ttl, udp csum)', async () => {
      const dev = nl.linkGet(hA, 'br0').index;
      nl.linkAdd(hA, { kind: 'vxlan', name: 'vx0', vni: 42, local: '10.1.0.1', port: 4789, dev, learning: false, ttl: 64, udpCsum: true, mtu: 1350, up: true });
      const [v] = await lab.ipJson(A, ['-d', 'link', 'show', 'vx0']);
      const d = v.linkinfo.info_data;
      assert.equal(v.linkinfo.info_kind, 'vxlan');
      assert.equal(v.mtu, 1350);
      assert.equal(d.id, 42);
      assert.equal(d.local, '10.1.0.1');
      assert.equal(d.port, 4789);
      assert.equal(d.link, 'br0');
      assert.equal(d.learning, false);
      assert.equal(d.ttl, 64);
      assert.equal(d.udp_csum, true);
      assert.deepEqual(nl.linkGet(hA, 'vx0').vxlan, { vni: 42, local: '10.1.0.1', port: 4789, dev, learning: false, proxy: false, ttl: 64, udpCsum: true });
    });

    it('creates macvlan children directly inside another netns, in each mode', async () => {
      const parent = nl.linkGet(hA, 'br0').index;
      for (const [name, mode] of [['mv0', 'bridge'], ['mv1', 'private'], ['mv2', 'vepa']] as const) {
        nl.linkAdd(hA, { kind: 'macvlan', name, parent, mode, netns: B.path, mac: `02:00:00:dd:00:0${name[2]}`, mtu: 1300 });
        const [m] = await lab.ipJson(B, ['-d', 'link', 'show', name]);
        assert.equal(m.linkinfo.info_kind, 'macvlan');
        assert.equal(m.linkinfo.info_data.mode, mode);
        assert.equal(m.address, `02:00:00:dd:00:0${name[2]}`);
        assert.equal(m.mtu, 1300);
        assert.deepEqual(nl.linkGet(hB, name).macvlan, { mode });
        assert.equal(nl.linkFind(hA, name), null, 'not created in the parent namespace');
      }
      for (const name of ['mv0', 'mv1', 'mv2']) nl.linkDel(hB, name);
      // passthru takes the parent exclusively: its own parent.
      nl.linkAdd(hA, { kind: 'veth', name: 'pt0', peer: { name: 'pt1' } });
      nl.linkAdd(hA, { kind: 'macvlan', name: 'mvp', parent: nl.linkGet(hA, 'pt0').index, mode: 'passthru', netns: B.path });
      const [m] = await lab.ipJson(B, ['-d', 'link', 'show', 'mvp']);
      assert.equal(m.linkinfo.info_data.mode, 'passthru');
      nl.linkDel(hB, 'mvp');
      nl.linkDel(hA, 'pt0');
    });

    it('deletes by name and by index; ENODEV afterwards', async () => {
      nl.linkAdd(hA, { kind: 'bridge', name: 'tmpbr0' });
      nl.linkAdd(hA, { kind: 'bridge', name: 'tmpbr1' });
      nl.linkDel(hA, 'tmpbr0');
      nl.linkDel(hA, nl.linkGet(hA, 'tmpbr1').index);
      const names = (await lab.ipJson(A, ['link', 'show'])).map((l: any) => l.ifname);
      assert.ok(!names.includes('tmpbr0') && !names.includes('tmpbr1'), '!names.includes(\'tmpbr0\') && !names.includes(\'tmpbr1\')');
      const e = throwsNl(() => nl.linkDel(hA, 'tmpbr0'), 'ENODEV');
      assert.equal(e.op, 'RTM_DELLINK tmpbr0');
      assert.ok(nl.isNotFound(e), 'nl.isNotFound(e)');
    });
  });

  describe('addresses', () => {
    it('adds IPv4 (with broadcast) and IPv6 (nodad) addresses and lists them like ip does', async () => {
      nl.addrAdd(hB, { link: 'eth0', address: '10.1.0.2/24' });
      nl.addrAdd(hB, { link: 'eth0', address: 'fd00:1::2/64' });
      const [j] = await lab.ipJson(B, ['addr', 'show', 'eth0']);
      const v4 = j.addr_info.find((a: any) => a.family === 'inet');
      const v6 = j.addr_info.find((a: any) => a.family === 'inet6' && a.local === 'fd00:1::2');
      assert.equal(v4.local, '10.1.0.2');
      assert.equal(v4.prefixlen, 24);
      assert.equal(v4.broadcast, '10.1.0.255');
      assert.equal(v6.prefixlen, 64);
      assert.equal(v6.nodad, true);
      assert.equal(v6.tentative, undefined, 'no DAD, so never tentative');

      const mine = nl.addrList(hB, { link: 'eth0' }).filter((a) => a.scope === 0);
      assert.deepEqual(mine.map((a) => a.cidr).sort(), ['10.1.0.2/24', 'fd00:1::2/64']);
      const a4 = mine.find((a) => a.family === 4)!;
      assert.equal(a4.broadcast, '10.1.0.255');
      assert.equal(a4.label, 'eth0');
      assert.ok(mine.find((a) => a.family === 6)!.flags & nl.IFA_F_NODAD, 'mine.find((a) => a.family === 6)!.flags & nl.IFA_F_NODAD');
      assert.deepEqual(nl.addrList(hB, { family: 4 }).map((a) => a.cidr).sort(), ['10.1.0.2/24', '127.0.0.1/8']);
    });

    it('EEXIST on a duplicate add, replace is idempotent, delete then EADDRNOTAVAIL', async () => {
      throwsNl(() => nl.addrAdd(hB, { link: 'eth0', address: '10.1.0.2/24' }), 'EEXIST');
      nl.addrReplace(hB, { link: 'eth0', address: '10.1.0.2/24' });
      nl.addrAdd(hB, { link: 'eth0', address: '10.1.0.3/24', broadcast: false });
      nl.addrDel(hB, { link: 'eth0', address: '10.1.0.3/24' });
      const [j] = await lab.ipJson(B, ['-4', 'addr', 'show', 'eth0']);
      assert.deepEqual(j.addr_info.map((a: any) => a.local), ['10.1.0.2']);
      const e = throwsNl(() => nl.addrDel(hB, { link: 'eth0', address: '10.1.0.3/24' }), 'EADDRNOTAVAIL');
      assert.match(e.op, /RTM_DELADDR 10\.1\.0\.3\/24 dev eth0/);
    });
  });

  describe('routes', () => {
    before(() => {
      nl.addrAdd(hA, { link: 'br0', address: '10.1.0.1/24' });
      nl.addrAdd(hA, { link: 'br0', address: 'fd00:1::1/64' });
    });

    it('replaces a default route tagged with knit\'s protocol, idempotently', async () => {
      const spec = { dst: '0.0.0.0/0', gw: '10.1.0.1', dev: 'eth0' };
      nl.routeReplace(hB, spec);
      nl.routeReplace(hB, spec);
      const j = await lab.ipJson(B, ['route', 'show', 'proto', String(nl.KNIT_RTPROT)]);
      assert.deepEqual(j.map((r: any) => [r.dst, r.gateway, r.dev]), [['default', '10.1.0.1', 'eth0']]);
      const mine = nl.routeList(hB, { protocol: nl.KNIT_RTPROT });
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.dst, '0.0.0.0/0');
      assert.equal(mine[0]!.gw, '10.1.0.1');
      assert.equal(mine[0]!.dev, nl.linkGet(hB, 'eth0').index);
      assert.equal(mine[0]!.table, 254);
      throwsNl(() => nl.routeAdd(hB, spec), 'EEXIST');
    });

    it('adds routes with metric, MTU/advmss, onlink, src, scope, table and IPv6', async () => {
      nl.routeAdd(hB, { dst: '10.5.0.0/24', gw: '10.1.0.1', priority: 5, mtu: 1300, advmss: 1200 });
      nl.routeAdd(hB, { dst: '10.6.0.0/24', gw: '10.99.0.1', dev: 'eth0', onlink: true });
      nl.routeAdd(hB, { dst: '10.7.0.0/24', dev: 'eth0', src: '10.1.0.2' });
      nl.routeAdd(hB, { dst: '10.8.0.0/16', gw: '10.1.0.1', table: 1000 });
      nl.routeAdd(hB, { dst: '::/0', gw: 'fd00:1::1', dev: 'eth0' });
      nl.routeAdd(hB, { dst: '10.9.9.9', dev: 'eth0', scope: 'link' });
      const j = await lab.ipJson(B, ['route', 'show', 'proto', String(nl.KNIT_RTPROT)]);
      const by = (dst: string): any => j.find((r: any) => r.dst === dst);
      assert.equal(by('10.5.0.0/24').metric, 5);
      assert.deepEqual(by('10.5.0.0/24').metrics, [{ mtu: 1300, advmss: 1200 }]);
      assert.ok(by('10.6.0.0/24').flags.includes('onlink'), 'by(\'10.6.0.0/24\').flags.includes(\'onlink\')');
      assert.equal(by('10.7.0.0/24').prefsrc, '10.1.0.2');
      assert.equal(by('10.7.0.0/24').scope, 'link');
      assert.equal(by('10.9.9.9').scope, 'link');
      const t = await lab.ipJson(B, ['route', 'show', 'table', '1000']);
      assert.deepEqual(t.map((r: any) => [r.dst, r.gateway]), [['10.8.0.0/16', '10.1.0.1']]);
      const v6 = await lab.ipJson(B, ['-6', 'route', 'show', 'proto', String(nl.KNIT_RTPROT)]);
      assert.deepEqual(v6.map((r: any) => [r.dst, r.gateway, r.dev]), [['default', 'fd00:1::1', 'eth0']]);

      const mine = nl.routeList(hB, { protocol: nl.KNIT_RTPROT, family: 4 });
      const r5 = mine.find((r) => r.dst === '10.5.0.0/24')!;
      assert.equal(r5.priority, 5);
      assert.equal(r5.mtu, 1300);
      assert.equal(r5.advmss, 1200);
      assert.equal(mine.find((r) => r.dst === '10.6.0.0/24')!.onlink, true);
      assert.equal(mine.find((r) => r.dst === '10.7.0.0/24')!.src, '10.1.0.2');
      assert.deepEqual(nl.routeList(hB, { table: 1000 }).map((r) => r.dst), ['10.8.0.0/16']);
      assert.ok(nl.routeList(hB, { table: 0 }).some((r) => r.table === 255), 'table 0 lists every table');
      assert.deepEqual(nl.routeList(hB, { family: 6, protocol: nl.KNIT_RTPROT }).map((r) => [r.dst, r.gw]), [['::/0', 'fd00:1::1']]);
      const eth0 = nl.linkGet(hB, 'eth0').index;
      assert.ok(nl.routeList(hB, { dev: 'eth0' }).every((r) => r.dev === eth0), 'nl.routeList(hB, { dev: \'eth0\' }).every((r) => r.dev === eth0)');
      // The kernel's own prefix route is there and untagged.
      assert.ok(nl.routeList(hB).some((r) => r.dst === '10.1.0.0/24' && r.protocol === nl.RTPROT_KERNEL), 'nl.routeList(hB).some((r) => r.dst === \'10.1.0.0/24\' && r.protocol === nl.RTPROT_KERNEL)');
    });

    it('deletes routes; ESRCH when none matches', async () => {
      nl.routeDel(hB, { dst: '10.5.0.0/24' });
      nl.routeDel(hB, { dst: '10.8.0.0/16', table: 1000 });
      nl.routeDel(hB, { dst: '::/0', gw: 'fd00:1::1' });
      const left = nl.routeList(hB, { protocol: nl.KNIT_RTPROT, table: 0 }).map((r) => r.dst).sort();
      assert.deepEqual(left, ['0.0.0.0/0', '10.6.0.0/24', '10.7.0.0/24', '10.9.9.9/32']);
      const e = throwsNl(() => nl.routeDel(hB, { dst: '10.5.0.0/24' }), 'ESRCH');
      assert.equal(e.op, 'RTM_DELROUTE 10.5.0.0/24');
    });
  });

  describe('neighbours and FDB', () => {
    it('adds, replaces, lists and deletes permanent ARP/NDP entries', async () => {
      nl.neighAdd(hB, { link: 'eth0', ip: '10.1.0.9', mac: '02:00:00:ee:00:09' });
      nl.neighAdd(hB, { link: 'eth0', ip: 'fd00:1::9', mac: '02:00:00:ee:00:09' });
      throwsNl(() => nl.neighAdd(hB, { link: 'eth0', ip: '10.1.0.9', mac: '02:00:00:ee:00:09' }), 'EEXIST');
      nl.neighReplace(hB, { link: 'eth0', ip: '10.1.0.9', mac: '02:00:00:ee:00:0a' });
      const j = await lab.ipJson(B, ['neigh', 'show', 'dev', 'eth0']);
      const n4 = j.find((n: any) => n.dst === '10.1.0.9');
      assert.equal(n4.lladdr, '02:00:00:ee:00:0a');
      assert.deepEqual(n4.state, ['PERMANENT']);
      assert.ok(j.some((n: any) => n.dst === 'fd00:1::9' && n.state.includes('PERMANENT')), 'j.some((n: any) => n.dst === \'fd00:1::9\' && n.state.includes(\'PERMANENT\'))');
      const list = nl.neighList(hB, { link: 'eth0' }).filter((n) => n.permanent);
      assert.deepEqual(list.map((n) => [n.ip, n.mac]).sort(), [['10.1.0.9', '02:00:00:ee:00:0a'], ['fd00:1::9', '02:00:00:ee:00:09']]);
      nl.neighDel(hB, { link: 'eth0', ip: '10.1.0.9' });
      nl.neighDel(hB, { link: 'eth0', ip: 'fd00:1::9' });
      assert.equal(nl.neighList(hB, { link: 'eth0' }).filter((n) => n.permanent).length, 0);
      throwsNl(() => nl.neighDel(hB, { link: 'eth0', ip: '10.1.0.9' }), 'ENOENT');
    });

    it('appends, replaces, lists and deletes vxlan FDB entries', async () => {
      const zero = '00:00:00:00:00:00';
      nl.fdbAppend(hA, { link: 'vx0', mac: zero, dst: '10.1.0.2' });
      nl.fdbAppend(hA, { link: 'vx0', mac: zero, dst: '10.1.0.3' });
      nl.fdbAdd(hA, { link: 'vx0', mac: '02:00:00:ff:00:01', dst: '10.1.0.4' });
      nl.fdbReplace(hA, { link: 'vx0', mac: '02:00:00:ff:00:01', dst: '10.1.0.5', vni: 42 });
      const out = await lab.exec(A, 'bridge', ['-json', 'fdb', 'show', 'dev', 'vx0']);
      const j = JSON.parse(out.stdout).filter((e: any) => e.dst);
      assert.deepEqual(j.map((e: any) => [e.mac, e.dst, e.state]).sort(), [
        ['00:00:00:00:00:00', '10.1.0.2', 'permanent'],
        ['00:00:00:00:00:00', '10.1.0.3', 'permanent'],
        ['02:00:00:ff:00:01', '10.1.0.5', 'permanent'],
      ]);
      assert.ok(j.every((e: any) => e.flags.includes('self')), 'j.every((e: any) => e.flags.includes(\'self\'))');
      const list = nl.fdbList(hA, { link: 'vx0' }).filter((f) => f.dst);
      assert.deepEqual(list.map((f) => [f.mac, f.dst, f.self, f.permanent]).sort(), [
        ['00:00:00:00:00:00', '10.1.0.2', true, true],
        ['00:00:00:00:00:00', '10.1.0.3', true, true],
        ['02:00:00:ff:00:01', '10.1.0.5', true, true],
      ]);
      nl.fdbDel(hA, { link: 'vx0', mac: zero, dst: '10.1.0.2' });
      nl.fdbDel(hA, { link: 'vx0', mac: '02:00:00:ff:00:01' });
      assert.deepEqual(nl.fdbList(hA, { link: 'vx0' }).filter((f) => f.dst).map((f) => f.dst), ['10.1.0.3']);
      throwsNl(() => nl.fdbDel(hA, { link: 'vx0', mac: '02:00:00:ff:00:01' }), 'ENOENT');
    });
  });

  describe('events', () => {
    it('delivers link, address, route and neighbour events from a netns', async () => {
      const seen: nl.NetlinkEvent[] = [];
      const stop = nl.subscribe({ links: true, addresses: true, routes: true, neighbours: true, netnsPath: A.path }, (ev) => seen.push(ev));
      try {
        nl.linkAdd(hA, { kind: 'bridge', name: 'evbr0', up: true });
        nl.addrAdd(hA, { link: 'evbr0', address: '10.44.0.1/24' });
        nl.routeAdd(hA, { dst: '10.45.0.0/24', gw: '10.44.0.2' });
        nl.neighAdd(hA, { link: 'evbr0', ip: '10.44.0.3', mac: '02:00:00:44:00:03' });
        nl.fdbAppend(hA, { link: 'vx0', mac: '00:00:00:00:00:00', dst: '10.1.0.7' });
        // IPv4 routes flushed with their device are not announced, so delete explicitly.
        nl.routeDel(hA, { dst: '10.45.0.0/24' });
        nl.linkDel(hA, 'evbr0');
        await waitFor('RTM_DELLINK evbr0', () => seen.find((e) => e.kind === 'link' && e.type === 'del' && e.link.name === 'evbr0'));
        const has = (p: (e: nl.NetlinkEvent) => boolean): boolean => seen.some(p);
        assert.ok(has((e) => e.kind === 'link' && e.type === 'new' && e.link.name === 'evbr0' && e.link.kind === 'bridge'), 'has((e) => e.kind === \'link\' && e.type === \'new\' && e.link.name === \'evbr0\' && e....');
        assert.ok(has((e) => e.kind === 'addr' && e.type === 'new' && e.addr.cidr === '10.44.0.1/24'), 'has((e) => e.kind === \'addr\' && e.type === \'new\' && e.addr.cidr === \'10.44.0.1/24\')');
        assert.ok(has((e) => e.kind === 'route' && e.type === 'new' && e.route.dst === '10.45.0.0/24' && e.route.protocol === nl.KNIT_RTPROT), 'has((e) => e.kind === \'route\' && e.type === \'new\' && e.route.dst === \'10.45.0.0/24...');
        assert.ok(has((e) => e.kind === 'neigh' && e.type === 'new' && e.neigh.ip === '10.44.0.3'), 'has((e) => e.kind === \'neigh\' && e.type === \'new\' && e.neigh.ip === \'10.44.0.3\')');
        assert.ok(has((e) => e.kind === 'fdb' && e.type === 'new' && e.fdb.dst === '10.1.0.7'), 'has((e) => e.kind === \'fdb\' && e.type === \'new\' && e.fdb.dst === \'10.1.0.7\')');
        assert.ok(has((e) => e.kind === 'route' && e.type === 'del' && e.route.dst === '10.45.0.0/24'), 'has((e) => e.kind === \'route\' && e.type === \'del\' && e.route.dst === \'10.45.0.0/24\')');
      } finally {
        stop();
        stop();
      }
      // Nothing arrives after unsubscribing.
      const before = seen.length;
      nl.linkAdd(hA, { kind: 'bridge', name: 'evbr1' });
      nl.linkDel(hA, 'evbr1');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(seen.length, before);
    });

    it('does not see events of other namespaces', async () => {
      const seen: nl.NetlinkEvent[] = [];
      const stop = nl.subscribe({ links: true, netnsPath: B.path }, (ev) => seen.push(ev));
      try {
        nl.linkAdd(hA, { kind: 'bridge', name: 'evbr2' });
        nl.linkAdd(hB, { kind: 'bridge', name: 'evbr3' });
        await waitFor('evbr3', () => seen.find((e) => e.kind === 'link' && e.link.name === 'evbr3'));
        assert.ok(!seen.some((e) => e.kind === 'link' && e.link.name === 'evbr2'), '!seen.some((e) => e.kind === \'link\' && e.link.name === \'evbr2\')');
      } finally {
        stop();
        nl.linkDel(hA, 'evbr2');
        nl.linkDel(hB, 'evbr3');
      }
    });
  });

  describe('sysctls and namespaces', () => {
    it('writes and reads sysctls inside a netns without touching the root namespace', async () => {
      const rootBefore = nl.getSysctl(null, 'net/ipv4/ip_forward');
      nl.setSysctl(A.path, 'net/ipv4/ip_forward', '1');
      assert.equal(nl.getSysctl(A.path, 'net/ipv4/ip_forward'), '1');
      assert.equal(nl.getSysctl(B.path, 'net.ipv4.ip_forward'), '0');
      const out = await lab.exec(A, 'cat', ['/proc/sys/net/ipv4/ip_forward']);
      assert.equal(out.stdout.trim(), '1');
      nl.setSysctl(B.path, 'net/ipv6/conf/eth0/accept_dad', 0);
      assert.equal((await lab.exec(B, 'cat', ['/proc/sys/net/ipv6/conf/eth0/accept_dad'])).stdout.trim(), '0');
      assert.equal(nl.getSysctl(null, 'net/ipv4/ip_forward'), rootBefore);
      assert.throws(() => nl.getSysctl(A.path, 'net/../../etc/passwd'), /must not contain/);
      throwsNl(() => nl.getSysctl(A.path, 'net/ipv4/conf/nosuchdev/forwarding'), 'ENOENT');
    });

    it('reports ENOENT for a missing netns path (open and veth peer)', () => {
      const missing = `/run/netns/${lab.prefix}-missing`;
      const e = throwsNl(() => Netlink.open(missing), 'ENOENT');
      assert.match(e.message, /No such file or directory \(ENOENT\)/);
      throwsNl(() => nl.linkAdd(hA, { kind: 'veth', name: 'vbad', peer: { name: 'eth1', netns: missing } }), 'ENOENT');
      throwsNl(() => nl.setSysctl(missing, 'net/ipv4/ip_forward', '1'), 'ENOENT');
      assert.equal(nl.linkFind(hA, 'vbad'), null);
    });

    it('a closed handle refuses requests', () => {
      const h = Netlink.open(A.path);
      h.close();
      h.close();
      throwsNl(() => nl.linkList(h), 'EBADF');
    });
  });
});
