// The rtnetlink codec without a kernel: byte layouts, alignment, nesting, error parsing,
// and encode -> decode round trips through the same decoders the kernel replies use.
import assert from 'node:assert/strict';
import {
  align4, attrList, decodeDone, decodeError, decodeIfAddr, decodeIfInfo, decodeNdMsg, decodeRtMsg, encodeIfAddr,
  encodeIfInfo, encodeNdMsg, encodeRtMsg, formatMAC, getStr, getU16be, getU32, getU8, IFINFOMSG_LEN, MsgWriter,
  netArg, NLMSG_HDRLEN, NlMsg, parseAttrs, parseMAC, parseMessages,
} from '../../pkg/netlink/codec';
import * as C from '../../pkg/netlink/constants';
import { decodeLink, encodeLinkAdd } from '../../pkg/netlink/link';
import { decodeAddr, encodeAddr } from '../../pkg/netlink/addr';
import { decodeRoute, encodeRoute, KNIT_RTPROT } from '../../pkg/netlink/route';
import { decodeEvent } from '../../pkg/netlink/events';
import { NetlinkError } from '../../pkg/netlink/errors';

/** Turns a finished request into the NlMsg a decoder sees (as if the kernel echoed it). */
function asReply(w: MsgWriter, type = w.type): NlMsg {
  const [m] = parseMessages(Buffer.from(w.finish(1)));
  return { ...m!, type };
}

describe('netlink codec', () => {
  it('writes nlmsghdr with length, type, request flag, seq and pid', () => {
    const w = new MsgWriter(C.RTM_GETLINK, C.NLM_F_DUMP);
    w.bytes(encodeIfInfo({ family: C.AF_UNSPEC }));
    const b = w.finish(0x01020304, 77);
    assert.equal(b.length, NLMSG_HDRLEN + IFINFOMSG_LEN);
    assert.equal(b.readUInt32LE(0), b.length);
    assert.equal(b.readUInt16LE(4), C.RTM_GETLINK);
    assert.equal(b.readUInt16LE(6), C.NLM_F_DUMP | C.NLM_F_REQUEST);
    assert.equal(b.readUInt32LE(8), 0x01020304);
    assert.equal(b.readUInt32LE(12), 77);
  });

  it('pads attributes to 4 bytes but records the unpadded length', () => {
    const w = new MsgWriter(C.RTM_NEWLINK, 0);
    w.str(C.IFLA_IFNAME, 'eth0'); // 4 + 5 -> padded to 12
    w.u8(C.IFLA_OPERSTATE, 6); // 4 + 1 -> 8
    w.u32(C.IFLA_MTU, 1400); // 8
    const b = w.finish(1);
    assert.equal(b.length, NLMSG_HDRLEN + 12 + 8 + 8);
    assert.equal(b.readUInt16LE(NLMSG_HDRLEN), 9);
    assert.equal(b.readUInt16LE(NLMSG_HDRLEN + 12), 5);
    assert.equal(b[NLMSG_HDRLEN + 8], 0, 'NUL terminator');
    const a = parseAttrs(b, NLMSG_HDRLEN);
    assert.equal(getStr(a, C.IFLA_IFNAME), 'eth0');
    assert.equal(getU8(a, C.IFLA_OPERSTATE), 6);
    assert.equal(getU32(a, C.IFLA_MTU), 1400);
    assert.deepEqual([0, 1, 2, 3, 4, 5, 8].map(align4), [0, 4, 4, 4, 4, 8, 8]);
  });

  it('nests attributes, patches their length and can set NLA_F_NESTED', () => {
    const w = new MsgWriter(C.RTM_SETLINK, 0);
    w.nest(C.IFLA_PROTINFO, () => { w.u8(C.IFLA_BRPORT_MODE, 1); w.u8(C.IFLA_BRPORT_LEARNING, 0); }, true);
    w.u16be(99, 4789);
    const b = w.finish(1);
    const off = NLMSG_HDRLEN;
    assert.equal(b.readUInt16LE(off), 4 + 8 + 8);
    assert.equal(b.readUInt16LE(off + 2), C.IFLA_PROTINFO | C.NLA_F_NESTED);
    const top = parseAttrs(b, off);
    const inner = parseAttrs(top.get(C.IFLA_PROTINFO)!);
    assert.equal(getU8(inner, C.IFLA_BRPORT_MODE), 1);
    assert.equal(getU8(inner, C.IFLA_BRPORT_LEARNING), 0);
    assert.equal(getU16be(top, 99), 4789);
    assert.deepEqual(top.get(99)!.subarray(0, 2), Buffer.from([0x12, 0xb5]), 'network byte order');
  });

  it('grows its buffer for large messages', () => {
    const w = new MsgWriter(C.RTM_NEWLINK, 0, 16);
    for (let i = 0; i < 100; i++) w.u32(i + 1, i);
    const list = attrList(w.finish(1).subarray(NLMSG_HDRLEN));
    assert.equal(list.length, 100);
    assert.equal(list[99]![1].readUInt32LE(0), 99);
  });

  it('stops at a truncated attribute instead of reading past the end', () => {
    const b = Buffer.from([8, 0, 1, 0, 1, 0, 0, 0, 200, 0, 2, 0, 0, 0]);
    const a = parseAttrs(b);
    assert.equal(a.size, 1);
    assert.equal(getU32(a, 1), 1);
  });

  it('splits datagrams into messages and rejects bad lengths', () => {
    const one = Buffer.from(new MsgWriter(C.RTM_NEWLINK, 0).u8(1, 1).finish(5));
    // A message whose length is not a multiple of 4 is followed by padding.
    const odd = Buffer.alloc(20);
    odd.writeUInt32LE(18, 0);
    odd.writeUInt16LE(C.NLMSG_NOOP, 4);
    const two = Buffer.from(new MsgWriter(C.RTM_DELLINK, 0).finish(6));
    const ms = parseMessages(Buffer.concat([one, odd, two]));
    assert.deepEqual(ms.map((m) => [m.type, m.seq, m.data.length]), [[C.RTM_NEWLINK, 5, 8], [C.NLMSG_NOOP, 0, 2], [C.RTM_DELLINK, 6, 0]]);
    const bad = Buffer.from(two);
    bad.writeUInt32LE(8, 0);
    assert.throws(() => parseMessages(bad), /malformed/);
  });

  it('round-trips the fixed family headers', () => {
    assert.deepEqual(decodeIfInfo(encodeIfInfo({ family: 7, type: 1, index: 42, flags: 0x11043, change: 0xffffffff })),
      { family: 7, type: 1, index: 42, flags: 0x11043, change: 0xffffffff });
    assert.deepEqual(decodeIfAddr(encodeIfAddr({ family: 10, prefix: 64, flags: 2, scope: 253, index: 9 })),
      { family: 10, prefix: 64, flags: 2, scope: 253, index: 9 });
    const rt = { family: 2, dstLen: 24, srcLen: 0, tos: 0, table: 254, protocol: KNIT_RTPROT, scope: 253, type: 1, flags: 4 };
    assert.deepEqual(decodeRtMsg(encodeRtMsg(rt)), rt);
    assert.deepEqual(decodeNdMsg(encodeNdMsg({ family: 7, index: 3, state: 0x80, flags: 2, type: 0 })),
      { family: 7, index: 3, state: 0x80, flags: 2, type: 0 });
  });

  it('parses an ACK, an error with extack and a capped echo', () => {
    const mk = (errno: number, flags: number, tlv?: string): NlMsg => {
      const echoed = Buffer.alloc(NLMSG_HDRLEN);
      echoed.writeUInt32LE(flags & C.NLM_F_CAPPED ? 200 : NLMSG_HDRLEN, 0); // capped: real length was larger
      const head = Buffer.alloc(4);
      head.writeInt32LE(-errno, 0);
      const parts = [head, echoed];
      if (tlv !== undefined) {
        const w = new MsgWriter(0, 0).str(C.NLMSGERR_ATTR_MSG, tlv).u32(C.NLMSGERR_ATTR_OFFS, 36);
        parts.push(Buffer.from(w.finish(0).subarray(NLMSG_HDRLEN)));
      }
      return { type: C.NLMSG_ERROR, flags, seq: 1, pid: 0, data: Buffer.concat(parts) };
    };
    assert.deepEqual(decodeError(mk(0, C.NLM_F_CAPPED)), { errno: 0 });
    assert.deepEqual(decodeError(mk(95, C.NLM_F_CAPPED | C.NLM_F_ACK_TLVS, 'Unknown device type')),
      { errno: 95, extack: 'Unknown device type', offset: 36 });
    assert.deepEqual(decodeError(mk(17, 0)), { errno: 17 });
    const done = Buffer.concat([Buffer.from([0xf3, 0xff, 0xff, 0xff]), Buffer.from(new MsgWriter(0, 0).str(1, 'bad dump').finish(0).subarray(16))]);
    assert.deepEqual(decodeDone({ type: C.NLMSG_DONE, flags: C.NLM_F_ACK_TLVS, seq: 1, pid: 0, data: done }), { errno: 13, extack: 'bad dump' });
  });

  it('formats NetlinkError like "op: strerror (CODE): extack"', () => {
    const e = new NetlinkError('RTM_NEWLINK veth veth0', 17, 'dev exists');
    assert.equal(e.code, 'EEXIST');
    assert.equal(e.errno, 17);
    assert.equal(e.message, 'RTM_NEWLINK veth veth0: File exists (EEXIST): dev exists');
    assert.equal(new NetlinkError('x', 95).code, 'EOPNOTSUPP');
    assert.equal(new NetlinkError('x', 2).extack, undefined);
  });

  it('parses and formats MAC addresses', () => {
    assert.deepEqual(parseMAC('02:AA:0b:00:00:ff'), Buffer.from([2, 0xaa, 0x0b, 0, 0, 0xff]));
    assert.equal(formatMAC(Buffer.from([2, 0xaa, 0x0b, 0, 0, 0xff])), '02:aa:0b:00:00:ff');
    assert.throws(() => parseMAC('02:aa:0b:00:00'), /not a MAC/);
    assert.throws(() => parseMAC('zz:aa:0b:00:00:01'), /not a MAC/);
  });

  it('accepts "default", bare addresses and CIDRs as prefixes', () => {
    assert.equal(netArg('default', 'dst', 6).ip.bytes.length, 16);
    assert.equal(netArg('10.0.0.1').prefix, 32);
    assert.equal(netArg('fd00::/8').prefix, 8);
    assert.throws(() => netArg('10.0.0.0/33'), /bad prefix/);
  });
});

describe('netlink object codecs', () => {
  it('encodes a veth with its peer in another netns and decodes the same link back', () => {
    const w = encodeLinkAdd({ kind: 'veth', name: 'veth0', mtu: 1400, mac: '02:00:00:00:00:01', up: true, master: 7,
      peer: { name: 'eth0', mac: '02:00:00:00:00:02', netns: 99 } }, { peer: 33 });
    const m = asReply(w);
    const hdr = decodeIfInfo(m.data);
    assert.equal(hdr.flags & C.IFF_UP, C.IFF_UP);
    const l = decodeLink(m);
    assert.equal(l.name, 'veth0');
    assert.equal(l.mtu, 1400);
    assert.equal(l.mac, '02:00:00:00:00:01');
    assert.equal(l.master, 7);
    assert.equal(l.kind, 'veth');
    // The peer block: ifinfomsg then its own attributes, netns fd among them.
    const info = parseAttrs(parseAttrs(m.data, IFINFOMSG_LEN).get(C.IFLA_LINKINFO)!);
    const peer = parseAttrs(info.get(C.IFLA_INFO_DATA)!).get(C.VETH_INFO_PEER)!;
    const pa = parseAttrs(peer, IFINFOMSG_LEN);
    assert.equal(getStr(pa, C.IFLA_IFNAME), 'eth0');
    assert.equal(getU32(pa, C.IFLA_MTU), 1400, 'peer MTU defaults to the host side');
    assert.equal(getU32(pa, C.IFLA_NET_NS_FD), 33);
    assert.equal(formatMAC(pa.get(C.IFLA_ADDRESS)!), '02:00:00:00:00:02');
  });

  it('round-trips vxlan and macvlan link data', () => {
    const vx = decodeLink(asReply(encodeLinkAdd({ kind: 'vxlan', name: 'vx0', vni: 7, local: '192.0.2.1', dev: 3, ttl: 9, udpCsum: false })));
    assert.deepEqual(vx.vxlan, { vni: 7, local: '192.0.2.1', port: 4789, dev: 3, learning: false, ttl: 9, udpCsum: false });
    const v6 = decodeLink(asReply(encodeLinkAdd({ kind: 'vxlan', name: 'vx1', vni: 8, local: 'fd00::1', group: 'ff05::1', port: 8472, learning: true })));
    assert.deepEqual(v6.vxlan, { vni: 8, local: 'fd00::1', group: 'ff05::1', port: 8472, learning: true });
    const px = decodeLink(asReply(encodeLinkAdd({ kind: 'vxlan', name: 'vx2', vni: 4096, proxy: true })));
    assert.deepEqual(px.vxlan, { vni: 4096, port: 4789, learning: false, proxy: true });
    const mv = asReply(encodeLinkAdd({ kind: 'macvlan', name: 'mv0', parent: 4, mode: 'vepa' }, { self: 12 }));
    const l = decodeLink(mv);
    assert.deepEqual(l.macvlan, { mode: 'vepa' });
    assert.equal(l.link, 4);
    assert.equal(getU32(parseAttrs(mv.data, IFINFOMSG_LEN), C.IFLA_NET_NS_FD), 12);
  });

  it('encodes IPv6 addresses with NODAD and IPv4 ones with a computed broadcast', () => {
    const a6 = decodeAddr(asReply(encodeAddr(C.RTM_NEWADDR, 0, 5, { address: 'fd00::5/64' })))!;
    assert.equal(a6.cidr, 'fd00::5/64');
    assert.equal(a6.flags & C.IFA_F_NODAD, C.IFA_F_NODAD);
    const a4 = decodeAddr(asReply(encodeAddr(C.RTM_NEWADDR, 0, 5, { address: '10.1.2.3/22', label: 'eth0' })))!;
    assert.deepEqual(a4, { index: 5, family: 4, prefix: 22, local: '10.1.2.3', cidr: '10.1.2.3/22', address: '10.1.2.3', broadcast: '10.1.3.255', label: 'eth0', scope: 0, flags: 0 });
    assert.equal(decodeAddr(asReply(encodeAddr(C.RTM_NEWADDR, 0, 5, { address: '10.1.2.3/31' })))!.broadcast, undefined);
  });

  it('encodes routes with iproute2 defaults (scope, protocol, table) and metrics', () => {
    const r = decodeRoute(asReply(encodeRoute(C.RTM_NEWROUTE, 0, { dst: '10.5.0.0/24', mtu: 1300, advmss: 1200, priority: 5 }, 3)))!;
    assert.deepEqual(r, { family: 4, dst: '10.5.0.0/24', table: 254, protocol: KNIT_RTPROT, scope: C.RT_SCOPE_LINK, type: 1, onlink: false, flags: 0, dev: 3, priority: 5, mtu: 1300, advmss: 1200 });
    const d = decodeRoute(asReply(encodeRoute(C.RTM_NEWROUTE, 0, { dst: 'default', gw: 'fd00::1', onlink: true, table: 1000 })))!;
    assert.equal(d.dst, '::/0');
    assert.equal(d.gw, 'fd00::1');
    assert.equal(d.scope, C.RT_SCOPE_UNIVERSE);
    assert.equal(d.table, 1000);
    assert.equal(d.onlink, true);
    const del = decodeRtMsg(encodeRoute(C.RTM_DELROUTE, 0, { dst: '10.5.0.0/24' }).finish(1).subarray(NLMSG_HDRLEN));
    assert.deepEqual([del.protocol, del.scope, del.type], [0, C.RT_SCOPE_NOWHERE, 0], 'deletes match any protocol/scope/type');
  });

  it('decodes events by message type, fdb by family', () => {
    const link = decodeEvent(asReply(encodeLinkAdd({ kind: 'bridge', name: 'br0' }), C.RTM_DELLINK));
    assert.equal(link?.kind, 'link');
    assert.equal(link?.kind === 'link' && link.type, 'del');
    const w = new MsgWriter(C.RTM_NEWNEIGH, 0);
    w.bytes(encodeNdMsg({ family: C.AF_BRIDGE, index: 4, state: C.NUD_PERMANENT, flags: C.NTF_SELF }));
    w.attr(C.NDA_LLADDR, parseMAC('00:00:00:00:00:00'));
    w.attr(C.NDA_DST, Buffer.from([10, 0, 0, 2]));
    const ev = decodeEvent(asReply(w));
    assert.deepEqual(ev, { kind: 'fdb', type: 'new', fdb: { index: 4, mac: '00:00:00:00:00:00', dst: '10.0.0.2', state: 0x80, flags: 2, self: true, permanent: true } });
    assert.equal(decodeEvent({ type: 99, flags: 0, seq: 0, pid: 0, data: Buffer.alloc(0) }), undefined);
  });
});
