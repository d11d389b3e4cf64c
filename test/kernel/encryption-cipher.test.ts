// The encrypted overlay with `"cipher": "chacha20-poly1305"` (docs/encryption.md) in the kernel
// lane: the SAs carry rfc7539esp(chacha20,poly1305) with a 256-bit key + salt, pods ping across
// (the full MTU with DF: the same ESP overhead as AES-GCM) and the underlay carries only ESP.
// The rest of the datapath (policies, rotation, stale keys) is the cipher-independent one that
// encryption.test.ts covers with AES-GCM.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot } from '../lab/lab';
import { get as backendFactory } from '../../pkg/agent/backend';
import { probeEsp } from '../../pkg/agent/backend/esp';
import { ENCRYPTED_VXLAN_PORT, DEFAULT_VXLAN_PORT } from '../../pkg/agent/backend/vxlan';
import { leaseOf, pairTopology, startBackend, startCapture, type Pair, type Side } from './encryption-lab';

const CFG = { type: 'vxlan', vni: 9, encrypted: true, cipher: 'chacha20-poly1305' };

describe('encrypted VXLAN with ChaCha20-Poly1305 (kernel lane)', function () {
  this.timeout(180_000);
  let lab: Lab;
  let tmp: string;
  let pair: Pair;
  let a: Side;
  let b: Side;

  before(async function () {
    requireRoot(this);
    const missing = probeEsp(null, 'chacha20-poly1305');
    if (missing.length) {
      console.log(`      skipped: this kernel lacks ${missing.join('; ')}; run it in the kernel lane`);
      this.skip();
    }
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-kernel-chacha-'));
    pair = await pairTopology(lab, 63, tmp);
    [a, b] = pair.sides;
  });

  after(async () => {
    for (const s of [a, b]) s?.backend?.close();
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('SAs with rfc7539esp(chacha20,poly1305); pods ping across at the full MTU; only ESP on the underlay', async () => {
    const cfg = backendFactory('vxlan').parseConfig(CFG);
    const mtu = await startBackend(lab, a, cfg, { generation: 1 });
    await startBackend(lab, b, cfg, { generation: 1 });
    assert.equal(mtu, 1500 - 50 - 40);
    for (let i = 0; i < 2; i++) { a.backend!.sync([leaseOf(b)]); b.backend!.sync([leaseOf(a)]); }
    const sa = await lab.ip(a.host, ['xfrm', 'state', 'list']);
    // 36 bytes of keying material: 72 hex digits.
    assert.match(sa, /aead rfc7539esp\(chacha20,poly1305\) 0x[0-9a-f]{72} 128/, sa);
    assert.doesNotMatch(sa, /rfc4106/);
    assert.match(a.backend!.encryption?.()?.cipher ?? '', /esp rfc7539esp\(chacha20,poly1305\) 256/);
    const cap = startCapture(pair.sw, [ENCRYPTED_VXLAN_PORT, DEFAULT_VXLAN_PORT]);
    assert.ok(await lab.ping(a.pod, b.podIp, 3), 'pod a -> pod b');
    assert.ok(await lab.ping(b.pod, a.podIp, 3), 'pod b -> pod a');
    const big = await lab.exec(a.pod, 'ping', ['-c', '1', '-W', '2', '-M', 'do', '-s', String(mtu - 28), b.podIp], { allowFail: true });
    assert.equal(big.code, 0, `ping with ${mtu - 28} bytes and DF: ${big.stdout}${big.stderr}`);
    const c = cap.stop();
    assert.ok(c.esp >= 6, `ESP frames seen: ${JSON.stringify(c)}`);
    assert.equal(c.clearVxlan, 0, `VXLAN in clear on the underlay: ${JSON.stringify(c)}`);
  });
});
