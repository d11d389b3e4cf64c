// A kernel refusal is knit's code 100 from every main plugin, with the errno (and the kernel's
// extended-ack text when it gave one) in `details`, and the failed ADD leaves nothing. The
// refusal used: a pod namespace with IPv6 disabled is given an IPv6 address (EACCES), which
// no config check can foresee.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host } from '../lab/lab';
import { attachmentLinks, buildKnit, reservationsOf, type KnitBuild } from '../lab/cni';
import { writeLeaseFile } from '../../pkg/agent/lease-file';

describe('kernel refusals are code 100 with errno in details', function () {
  this.timeout(60_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;
  let host: Host;

  before(async function () {
    requireRoot(this);
    knit = await buildKnit(['knit-bridge', 'knit-macvlan', 'knit-overlay', 'knit-host-local']);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-kref-'));
    host = await lab.host('kr', await lab.switch('krsw'), { address: '10.218.0.1/24' });
  });

  after(async () => {
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const v6ipam = (dir: string): object => ({ type: 'knit-host-local', dataDir: dir, ranges: [[{ subnet: 'fd00:218::/64' }]] });
  const cases: Record<string, () => Record<string, unknown>> = {
    'knit-bridge': () => ({ cniVersion: '1.1.0', name: 'krbr', type: 'knit-bridge', bridge: 'kkrbr0', isGateway: true, ipam: v6ipam(path.join(tmp, 'br')) }),
    'knit-macvlan': () => ({ cniVersion: '1.1.0', name: 'krmv', type: 'knit-macvlan', master: 'eth0', runDir: path.join(tmp, 'run'), ipam: v6ipam(path.join(tmp, 'mv')) }),
    'knit-overlay': () => {
      const runDir = path.join(tmp, 'ov-run');
      writeLeaseFile(runDir, { network: '10.218.128.0/17', subnet: '10.218.130.0/24', mtu: 1450 });
      return { cniVersion: '1.1.0', name: 'krov', type: 'knit-overlay', runDir, ipam: v6ipam(path.join(tmp, 'ov')) };
    },
  };

  for (const [plugin, conf] of Object.entries(cases)) {
    it(`${plugin}: ADD into a pod with IPv6 disabled fails with 100 (errno EACCES), leaving nothing`, async () => {
      const pod = await lab.pod(`kr-${plugin.slice(5, 8)}`);
      execFileSync('ip', ['netns', 'exec', pod.name, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
      const c = conf();
      const out = await lab.runPlugin(host, knit.bin(plugin), { command: 'ADD', conf: c, path: [knit.binDir], containerId: 'kr1', netns: pod.path, ifName: 'eth0' });
      assert.equal(out.code, 1, out.stdout);
      assert.equal(out.json?.code, 100, out.stdout);
      assert.match(out.json.details ?? '', /errno EACCES/, out.stdout);
      assert.doesNotMatch(out.stderr, /unexpected failure/);
      const ipam = (c.ipam as { dataDir: string }).dataDir;
      assert.deepEqual(reservationsOf(ipam, String(c.name), 'kr1'), [], 'no reservation left');
      assert.deepEqual((await attachmentLinks(lab, host, String(c.name), 'kr1')).map((l) => l.ifname), [], 'no host link left');
      assert.deepEqual((await lab.ipJson<any[]>(pod, ['link', 'show'])).map((l) => l.ifname), ['lo'], 'only lo in the pod');
    });
  }
});
