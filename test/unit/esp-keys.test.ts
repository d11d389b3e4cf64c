// The encrypted overlay's keys (pkg/agent/backend/esp-keys.ts) and the xfrm wire format
// (pkg/netlink/xfrm.ts): both ends of a pair derive the same SA per direction and generation; a
// new generation or a new public key changes the SPI; the private key stays 0600 in the state
// directory; the xfrm structs sit where linux/xfrm.h puts them (x86-64).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { get as backendFactory } from '../../pkg/agent/backend';
import {
  DEFAULT_ESP_CIPHER, ESP_CIPHERS, ESP_KEY_BYTES, NODE_KEY_FILE, directionalSa, isKnitReqid, isPublicKey, loadNodeKey, newNodeKey, pairSecret, parseGeneration, reqidFor,
} from '../../pkg/agent/backend/esp-keys';
import { decodePolicy, decodeState, XFRM_MSG_NEWPOLICY, XFRM_MSG_NEWSA, XFRM_POLICY_OUT } from '../../pkg/netlink/xfrm';
import { NAMED_NETWORKS_ESP, NAMED_NETWORKS_ESP_BY_CIPHER, POD_NETWORK_ESP } from '../../pkg/agent/backend/esp';
import { ENCRYPTED_VXLAN_PORT, VXLAN_PORT } from '../../pkg/network/datapath';
import { CIPHERS, DEFAULT_CIPHER } from '../../pkg/network/spec';
import { ENCRYPTED_VXLAN_PORT as POD_ENCRYPTED_PORT } from '../../pkg/agent/backend/vxlan';

describe('encrypted overlay keys', () => {
  const a = newNodeKey();
  const b = newNodeKey();

  it('publishes a 32-byte X25519 public key as base64url', () => {
    assert.ok(isPublicKey(a.publicKey), a.publicKey);
    assert.equal(Buffer.from(a.publicKey, 'base64url').length, 32);
    assert.ok(!isPublicKey('short'));
  });

  it('both ends derive the same SA for each direction; directions and generations differ', () => {
    const sa = pairSecret(a, b.publicKey);
    const sb = pairSecret(b, a.publicKey);
    assert.deepEqual(sa, sb);
    const ab = directionalSa(sa, 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey);
    const abAtB = directionalSa(sb, 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey);
    assert.equal(ab.spi, abAtB.spi);
    assert.deepEqual(ab.key, abAtB.key);
    assert.equal(ab.key.length, ESP_KEY_BYTES);
    const ba = directionalSa(sa, 1, '192.0.2.2', b.publicKey, '192.0.2.1', a.publicKey);
    const ab2 = directionalSa(sa, 2, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey);
    for (const o of [ba, ab2]) {
      assert.notEqual(o.spi, ab.spi);
      assert.notDeepEqual(o.key, ab.key);
    }
    assert.ok(ab.spi >= 0x100 && ab.spi <= 0xffffffff);
  });

  it('the named networks\' domain derives other SPIs and keys from the same pair, owned by other reqids', () => {
    const sa = pairSecret(a, b.publicKey);
    const pod = directionalSa(sa, 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey);
    const named = directionalSa(sa, 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey, 'aes-gcm', NAMED_NETWORKS_ESP.label);
    const namedAtB = directionalSa(pairSecret(b, a.publicKey), 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey, 'aes-gcm', NAMED_NETWORKS_ESP.label);
    assert.equal(named.spi, namedAtB.spi);
    assert.deepEqual(named.key, namedAtB.key);
    assert.notEqual(named.spi, pod.spi);
    assert.notDeepEqual(named.key, pod.key);
    assert.deepEqual(directionalSa(sa, 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey, 'aes-gcm', POD_NETWORK_ESP.label), pod, 'the pod network\'s SAs are those of before domains');
    const r = reqidFor(3, NAMED_NETWORKS_ESP.reqidBase);
    assert.ok(isKnitReqid(r, NAMED_NETWORKS_ESP.reqidBase) && !isKnitReqid(r));
    assert.ok(!isKnitReqid(reqidFor(3), NAMED_NETWORKS_ESP.reqidBase));
    assert.notEqual(NAMED_NETWORKS_ESP.priority, POD_NETWORK_ESP.priority + 1, 'block priorities differ too');
  });

  it('named networks: one domain per cipher, each with its own port, priorities, reqids and SAs; AES-GCM\'s is the one of before', () => {
    const aes = NAMED_NETWORKS_ESP_BY_CIPHER['aes-gcm'];
    const cha = NAMED_NETWORKS_ESP_BY_CIPHER['chacha20-poly1305'];
    assert.deepEqual(Object.keys(NAMED_NETWORKS_ESP_BY_CIPHER).sort(), Object.keys(ESP_CIPHERS).sort(), 'a domain for every cipher knit knows');
    assert.deepEqual([...CIPHERS].sort(), Object.keys(ESP_CIPHERS).sort(), '-o cipher takes exactly the ciphers the datapath has');
    assert.equal(DEFAULT_CIPHER, DEFAULT_ESP_CIPHER);
    assert.deepEqual({ label: aes.label, priority: aes.priority, reqidBase: aes.reqidBase }, NAMED_NETWORKS_ESP);
    assert.equal(aes.port, ENCRYPTED_VXLAN_PORT);
    assert.equal(aes.port, 4798);
    // No two of knit's datapaths share a port, a policy priority (each uses p and p + 1) or a reqid base.
    const all = [{ ...POD_NETWORK_ESP, port: POD_ENCRYPTED_PORT }, aes, cha];
    const ports = [VXLAN_PORT, ...all.map((d) => d.port)];
    assert.equal(new Set(ports).size, ports.length, `ports ${ports}`);
    const prios = all.flatMap((d) => [d.priority, d.priority + 1]);
    assert.equal(new Set(prios).size, prios.length, `priorities ${prios}`);
    assert.equal(new Set(all.map((d) => d.reqidBase)).size, all.length);
    for (const d of all) for (const o of all) if (d !== o) assert.ok(!isKnitReqid(reqidFor(7, d.reqidBase), o.reqidBase), `${d.label} reqid owned by ${o.label}`);
    assert.equal(new Set(all.map((d) => d.label)).size, all.length);
    // Both ends of a pair derive the same ChaCha SA, another than AES-GCM's of the same pair and generation.
    const sa = pairSecret(a, b.publicKey);
    const c1 = directionalSa(sa, 2, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey, 'chacha20-poly1305', cha.label);
    const c2 = directionalSa(pairSecret(b, a.publicKey), 2, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey, 'chacha20-poly1305', cha.label);
    const a1 = directionalSa(sa, 2, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey, 'aes-gcm', aes.label);
    assert.equal(c1.spi, c2.spi);
    assert.deepEqual(c1.key, c2.key);
    assert.equal(c1.key.length, 36);
    assert.notEqual(c1.spi, a1.spi);
  });

  it('cipher chacha20-poly1305: a 36-byte key (256-bit key + salt), another SPI and key than AES-GCM; AES-GCM\'s SA is the one of before ciphers were a choice', () => {
    const sa = pairSecret(a, b.publicKey);
    const gcm = directionalSa(sa, 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey);
    assert.deepEqual(directionalSa(sa, 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey, 'aes-gcm'), gcm);
    const cc = directionalSa(sa, 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey, 'chacha20-poly1305');
    const ccAtB = directionalSa(pairSecret(b, a.publicKey), 1, '192.0.2.1', a.publicKey, '192.0.2.2', b.publicKey, 'chacha20-poly1305');
    assert.equal(cc.key.length, 36);
    assert.equal(ESP_CIPHERS['chacha20-poly1305'].keyBytes, 36);
    assert.deepEqual(cc, ccAtB, 'both ends agree');
    assert.notEqual(cc.spi, gcm.spi, 'a cipher change never meets an SA of the other cipher');
    assert.notDeepEqual(cc.key.subarray(0, 20), gcm.key);
  });

  it('vxlan backend.cipher: aes-gcm (default, not stored) or chacha20-poly1305, only when encrypted', () => {
    const parse = (b: Record<string, unknown>): unknown => backendFactory('vxlan').parseConfig({ type: 'vxlan', ...b });
    assert.equal((parse({ encrypted: true }) as { cipher?: string }).cipher, undefined);
    assert.equal((parse({ encrypted: true, cipher: 'aes-gcm' }) as { cipher?: string }).cipher, undefined);
    assert.equal((parse({ encrypted: true, cipher: 'chacha20-poly1305' }) as { cipher?: string }).cipher, 'chacha20-poly1305');
    assert.throws(() => parse({ encrypted: true, cipher: 'des' }), /backend\.cipher "des": one of aes-gcm, chacha20-poly1305 \(default aes-gcm\)/);
    assert.throws(() => parse({ cipher: 'chacha20-poly1305' }), /backend\.cipher "chacha20-poly1305": only with "encrypted": true/);
    assert.throws(() => parse({ encrypted: true, cipher: 'toString' }), /backend\.cipher/);
  });

  it('a peer holding a stale public key derives another SPI and key (rejected, never decrypted)', () => {
    const a2 = newNodeKey(); // a after losing its key
    const fresh = directionalSa(pairSecret(b, a2.publicKey), 1, '192.0.2.2', b.publicKey, '192.0.2.1', a2.publicKey);
    const stale = directionalSa(pairSecret(b, a.publicKey), 1, '192.0.2.2', b.publicKey, '192.0.2.1', a.publicKey);
    assert.notEqual(fresh.spi, stale.spi);
    assert.notDeepEqual(fresh.key, stale.key);
  });

  it('keeps the private key in the state directory, mode 0600, the same across loads', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-esp-key-'));
    try {
      const k1 = loadNodeKey(dir);
      const k2 = loadNodeKey(dir);
      assert.equal(k1.publicKey, k2.publicKey);
      assert.equal(fs.statSync(path.join(dir, NODE_KEY_FILE)).mode & 0o777, 0o600);
      assert.ok(!fs.readFileSync(path.join(dir, NODE_KEY_FILE), 'utf8').includes(k1.publicKey), 'the file is the PKCS8 private key, not the public one');
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });

  it('generations: published as decimal strings; reqids mark knit SAs', () => {
    assert.equal(parseGeneration('12'), 12);
    assert.equal(parseGeneration('-1'), null);
    assert.equal(parseGeneration(undefined), null);
    assert.ok(isKnitReqid(reqidFor(3)));
    assert.equal(reqidFor(3) & 0xffff, 3);
    assert.ok(!isKnitReqid(1));
  });
});

describe('xfrm wire format', () => {
  it('decodes xfrm_usersa_info at linux/xfrm.h offsets', () => {
    const d = Buffer.alloc(224);
    Buffer.from([192, 0, 2, 2]).copy(d, 56);
    d.writeUInt32BE(0x1234, 72);
    d.writeUInt8(50, 76);
    Buffer.from([192, 0, 2, 1]).copy(d, 80);
    d.writeBigUInt64LE(1000n, 160);
    d.writeBigUInt64LE(7n, 168);
    d.writeUInt32LE(reqidFor(2), 208);
    d.writeUInt16LE(2, 212);
    const s = decodeState({ type: XFRM_MSG_NEWSA, flags: 0, seq: 0, pid: 0, data: d })!;
    assert.deepEqual({ ...s }, { src: '192.0.2.1', dst: '192.0.2.2', spi: 0x1234, proto: 50, bytes: 1000n, packets: 7n, reqid: reqidFor(2), mode: 0 });
  });

  it('decodes xfrm_userpolicy_info: selector, priority, direction, template reqid', () => {
    const d = Buffer.alloc(168 + 4 + 64);
    Buffer.from([192, 0, 2, 2]).copy(d, 0);
    Buffer.from([192, 0, 2, 1]).copy(d, 16);
    d.writeUInt16BE(4799, 32); d.writeUInt16BE(0xffff, 34);
    d.writeUInt16LE(2, 40); d.writeUInt8(32, 42); d.writeUInt8(32, 43); d.writeUInt8(17, 44);
    d.writeUInt32LE(0x6b6e, 152); d.writeUInt8(XFRM_POLICY_OUT, 160);
    d.writeUInt16LE(68, 168); d.writeUInt16LE(5, 170); d.writeUInt32LE(reqidFor(4), 172 + 44);
    const p = decodePolicy({ type: XFRM_MSG_NEWPOLICY, flags: 0, seq: 0, pid: 0, data: d })!;
    assert.deepEqual(p.sel, { dst: '192.0.2.2', dstPrefix: 32, src: '192.0.2.1', srcPrefix: 32, dport: 4799, proto: 17 });
    assert.equal(p.priority, 0x6b6e);
    assert.equal(p.dir, XFRM_POLICY_OUT);
    assert.deepEqual(p.tmpl, { reqid: reqidFor(4) });
  });
});
