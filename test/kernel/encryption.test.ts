// The encrypted overlay (issue 16, docs/encryption.md) in the kernel lane, whose 6.1 kernel has
// ESP and rfc4106(gcm(aes)) (the host's kernel has neither: test/integration/encryption-refused
// covers the refusal there). Two hosts on an underlay switch, a pod behind each, the vxlan backend
// with `encrypted: true` driven with a static peer list (what each node's lease publishes):
// nothing leaves in clear before the keys are known, pods ping and iperf3 across, the underlay
// carries only ESP, a rotation during a 30 s TCP stream keeps the stream, and a peer holding a
// stale key is rejected and recovers with the next rotation. `ip xfrm` is the oracle.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot } from '../lab/lab';
import { probeEsp } from '../../pkg/agent/backend/esp';
import { ENC_KEY, NODE_KEY_FILE } from '../../pkg/agent/backend/esp-keys';
import { ENCRYPTED_VXLAN_PORT, DEFAULT_VXLAN_PORT } from '../../pkg/agent/backend/vxlan';
import { iperf, leaseOf, pairTopology, sleep, startBackend, startCapture, xfrmStat, type Pair, type Side } from './encryption-lab';

const CFG = { type: 'vxlan', vni: 7, encrypted: true };
const PORTS = [ENCRYPTED_VXLAN_PORT, DEFAULT_VXLAN_PORT];

describe('encrypted VXLAN (ESP) between two hosts (kernel lane)', function () {
  this.timeout(240_000);
  let lab: Lab;
  let tmp: string;
  let pair: Pair;
  let a: Side;
  let b: Side;
  let mtu: number;

  before(async function () {
    requireRoot(this);
    const missing = probeEsp(null);
    if (missing.length) {
      console.log(`      skipped: this kernel lacks ${missing.join('; ')}; run it in the kernel lane: scripts/kernel-run -- node_modules/.bin/mocha test/kernel/encryption.test.ts`);
      this.skip();
    }
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-kernel-esp-'));
    pair = await pairTopology(lab, 61, tmp);
    [a, b] = pair.sides;
  });

  after(async () => {
    for (const s of [a, b]) s?.backend?.close();
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Both sides synced with what the other publishes now. */
  const syncBoth = (): void => { a.backend!.sync([leaseOf(b)]); b.backend!.sync([leaseOf(a)]); };
  const states = async (s: Side): Promise<any[]> => parseStates(await lab.ip(s.host, ['xfrm', 'state', 'list']));

  it('sends nothing, in clear or otherwise, to a peer whose key it has not learned; MTU is underlay − 90', async () => {
    mtu = await startBackend(lab, a, CFG, { generation: 1 });
    await startBackend(lab, b, CFG, { generation: 1 });
    assert.equal(mtu, 1500 - 50 - 40);
    const dev = (await lab.ipJson(a.host, ['-d', 'link', 'show', 'knit.7']))[0];
    assert.equal(dev.linkinfo.info_data.port, ENCRYPTED_VXLAN_PORT);
    // Each knows the other's VTEP but not its key yet.
    const ra = a.backend!.sync([leaseOf(b, [ENC_KEY])]);
    b.backend!.sync([leaseOf(a, [ENC_KEY])]);
    assert.deepEqual(ra.programmed, []);
    assert.match(ra.skipped[0]?.reason ?? '', /no encryption key/);
    const cap = startCapture(pair.sw, PORTS);
    assert.ok(!(await lab.ping(a.pod, b.podIp, 2)), 'a pod reached the other host before keys were known');
    const c = cap.stop();
    assert.equal(c.clearVxlan, 0, `VXLAN in clear on the underlay: ${JSON.stringify(c)}`);
    assert.equal(c.esp, 0, `ESP without keys: ${JSON.stringify(c)}`);
    const pol = await lab.ip(a.host, ['xfrm', 'policy', 'list']);
    assert.match(pol, /action block/, pol);
  });

  it('pods ping and run iperf3 across; the underlay carries only ESP, no VXLAN in clear', async () => {
    syncBoth();
    syncBoth();
    const sa = await lab.ip(a.host, ['xfrm', 'state', 'list']);
    assert.match(sa, /proto esp spi 0x[0-9a-f]+ reqid \d+ mode transport/);
    assert.match(sa, /aead rfc4106\(gcm\(aes\)\) 0x[0-9a-f]+ 128/);
    const cap = startCapture(pair.sw, PORTS);
    assert.ok(await lab.ping(a.pod, b.podIp, 3), 'pod a -> pod b');
    assert.ok(await lab.ping(b.pod, a.podIp, 3), 'pod b -> pod a');
    // The full MTU, DF set: the ESP overhead is accounted for.
    const big = await lab.exec(a.pod, 'ping', ['-c', '1', '-W', '2', '-M', 'do', '-s', String(mtu - 28), b.podIp], { allowFail: true });
    assert.equal(big.code, 0, `ping with ${mtu - 28} bytes and DF: ${big.stdout}${big.stderr}`);
    const r = await iperf(lab, b.pod, a.pod, b.podIp, 3);
    const c = cap.stop();
    assert.ok(r.ok && r.gbps > 0, `iperf3: ${JSON.stringify(r)}`);
    console.log(`      iperf3 encrypted: ${(r.gbps * 1000).toFixed(0)} Mbit/s; underlay capture ${JSON.stringify(c)}`);
    assert.ok(c.esp > 100, `ESP frames seen: ${JSON.stringify(c)}`);
    assert.equal(c.clearVxlan, 0, `VXLAN in clear on the underlay: ${JSON.stringify(c)}`);
  });

  it('injected clear VXLAN to the encrypted port is dropped by the inbound policy', async () => {
    const before = await xfrmStat(lab, b.host);
    // A VXLAN-sized UDP datagram from a's address to b's encrypted port, outside the tunnel: a's
    // own block policy drops it, so send it from the switch side with a's address on a spare host.
    const spoof = await lab.host('spoof61', pair.sw, { address: '192.168.61.9/24', ifName: 'ens33' });
    const r = await lab.exec(spoof, 'bash', ['-c', `exec 3<>/dev/udp/${b.host.address}/${ENCRYPTED_VXLAN_PORT}; printf '\\x08\\x00\\x00\\x00\\x00\\x00\\x07\\x00%064d' 0 >&3`], { allowFail: true });
    assert.equal(r.code, 0, r.stderr);
    await sleep(300);
    const after = await xfrmStat(lab, b.host);
    assert.ok((after.XfrmInNoPols ?? 0) + (after.XfrmInTmplMismatch ?? 0) > (before.XfrmInNoPols ?? 0) + (before.XfrmInTmplMismatch ?? 0),
      `the clear datagram was not refused by policy: before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
  });

  it('a key rotation during a 30 s TCP stream keeps the stream: no stall, iperf3 completes', async () => {
    const rotate = async (): Promise<void> => {
      await sleep(8000);
      a.backend!.setKeyGeneration!(2);
      b.backend!.setKeyGeneration!(2);
      // As the agents do it: each installs its inbound SA for 2 and publishes encGen 2; each
      // switches its outbound policy when it sees the other's 2; old inbound SAs go once the
      // new ones carry traffic.
      a.backend!.sync([leaseOf(b)]); // b still publishes 1: a keeps sending with 1
      b.backend!.sync([leaseOf(a)]); // a publishes 2: b switches to 2
      await sleep(3000);
      a.backend!.sync([leaseOf(b)]); // b publishes 2: a switches; a's inbound 1 retired (2 carries traffic)
      await sleep(3000);
      syncBoth();
    };
    const r = await iperf(lab, b.pod, a.pod, b.podIp, 30, rotate);
    console.log(`      30 s stream across the rotation: ${(r.gbps * 1000).toFixed(0)} Mbit/s, ${r.retransmits} retransmits, per second (Mbit/s): ${r.intervals.map((x) => (x / 1e6).toFixed(0)).join(' ')}`);
    assert.ok(r.ok, `iperf3 failed: ${r.error}`);
    assert.ok(r.intervals.length >= 29, `intervals: ${r.intervals.length}`);
    assert.ok(r.intervals.every((x) => x > 0), `a second without traffic: ${r.intervals.join(', ')}`);
    // Only generation 2 remains, in both directions.
    for (const s of [a, b]) {
      const reqids = new Set((await states(s)).map((x) => Number(x.reqid)));
      assert.deepEqual([...reqids].map((x) => x & 0xffff), [2], `${s.name}: SAs of generations ${[...reqids].map((x) => x & 0xffff)}`);
    }
    assert.ok(await lab.ping(a.pod, b.podIp, 2));
  });

  it('a peer with a stale key is rejected, and recovers with the next rotation', async () => {
    // a restarts having lost its key (state wiped): a new key pair; b still holds a's old key.
    fs.rmSync(path.join(a.stateDir, NODE_KEY_FILE));
    await startBackend(lab, a, CFG, { generation: 2, retireGraceMs: 500 });
    a.backend!.sync([leaseOf(b)]);
    await sleep(600);
    a.backend!.sync([leaseOf(b)]); // a's SAs of the old key retired after the grace period
    const before = await xfrmStat(lab, a.host);
    assert.ok(!(await lab.ping(b.pod, a.podIp, 2)), 'b reached a with a stale key');
    const after = await xfrmStat(lab, a.host);
    assert.ok((after.XfrmInNoStates ?? 0) > (before.XfrmInNoStates ?? 0), `a did not reject b's ESP: ${JSON.stringify({ before, after })}`);
    // The next rotation: both move to 3 and b reads a's lease again.
    a.backend!.setKeyGeneration!(3);
    b.backend!.setKeyGeneration!(3);
    syncBoth();
    syncBoth();
    assert.ok(await lab.ping(b.pod, a.podIp, 2), 'b -> a after the rotation');
    assert.ok(await lab.ping(a.pod, b.podIp, 2), 'a -> b after the rotation');
  });
});

/** `ip xfrm state` text to {src, dst, spi, reqid} (iproute2 has no JSON for xfrm). */
function parseStates(text: string): any[] {
  const out: any[] = [];
  let cur: any = null;
  for (const l of text.split('\n')) {
    let m = /^src (\S+) dst (\S+)/.exec(l);
    if (m) { cur = { src: m[1], dst: m[2] }; out.push(cur); continue; }
    m = /proto esp spi (0x[0-9a-f]+) reqid (\d+)/.exec(l);
    if (m && cur) { cur.spi = m[1]; cur.reqid = Number(m[2]); }
  }
  return out;
}
