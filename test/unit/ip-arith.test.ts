// pkg/ip's prefix arithmetic (host masks, the block of an address) and pkg/hash's FNV-1a.
import assert from 'node:assert/strict';
import { fnv1a32 } from '../../pkg/hash';
import { blockOf, boundsOf, formatIP, hostMask, lastOf, mustParseIP, ipToBigInt, networkOf, parseCIDR } from '../../pkg/ip/ip';

const n = (s: string): bigint => ipToBigInt(mustParseIP(s));

describe('pkg/ip prefix arithmetic', () => {
  it('hostMask: the host bits of a prefix', () => {
    assert.equal(hostMask(24, 4), 0xffn);
    assert.equal(hostMask(32, 4), 0n);
    assert.equal(hostMask(0, 4), 0xffffffffn);
    assert.equal(hostMask(64, 6), (1n << 64n) - 1n);
    assert.equal(hostMask(128, 6), 0n);
  });

  it('blockOf: first and last address of the /p block holding an address', () => {
    assert.deepEqual(blockOf(n('10.1.2.77'), 26, 4), { lo: n('10.1.2.64'), hi: n('10.1.2.127') });
    assert.deepEqual(blockOf(n('10.1.2.64'), 26, 4), { lo: n('10.1.2.64'), hi: n('10.1.2.127') });
    assert.deepEqual(blockOf(n('10.1.2.77'), 32, 4), { lo: n('10.1.2.77'), hi: n('10.1.2.77') });
    assert.deepEqual(blockOf(n('fd00::1:abcd'), 122, 6), { lo: n('fd00::1:abc0'), hi: n('fd00::1:abff') });
  });

  it('boundsOf, networkOf, lastOf agree for a prefix whose address is not the network address', () => {
    const net = parseCIDR('192.168.7.200/21')!;
    assert.deepEqual(boundsOf(net), { lo: n('192.168.0.0'), hi: n('192.168.7.255') });
    assert.equal(formatIP(networkOf(net).ip), '192.168.0.0');
    assert.equal(networkOf(net).prefix, 21);
    assert.equal(formatIP(lastOf(net)), '192.168.7.255');
    const v6 = parseCIDR('fd00:1:2:3::9/48')!;
    assert.equal(formatIP(networkOf(v6).ip), 'fd00:1:2::');
    assert.equal(formatIP(lastOf(v6)), 'fd00:1:2:ffff:ffff:ffff:ffff:ffff');
  });
});

describe('pkg/hash FNV-1a', () => {
  it('matches the published 32-bit FNV-1a test vectors', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5);
    assert.equal(fnv1a32('a'), 0xe40c292c);
    assert.equal(fnv1a32('foobar'), 0xbf9cf968);
  });

  it('a seed gives a different, still unsigned, hash', () => {
    const h = fnv1a32('knit', 0x01000193);
    assert.notEqual(h, fnv1a32('knit'));
    assert.ok(h >= 0 && h <= 0xffffffff && Number.isInteger(h));
  });
});
