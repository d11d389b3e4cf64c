// The VLAN part of `npm run demo`, run inside the kernel lane (scripts/kernel-run), whose kernel
// has 802.1Q: two hosts on an underlay switch, a VLAN 100 and a VLAN 200 pod on each, all in one
// subnet so that only the VLANs keep them apart.
import { join, resolve } from 'node:path';
import { Lab, type Netns } from '../test/lab/lab';

const BIN = resolve(__dirname, '../dist/bin');
const say = (s: string): void => console.log(`   ${s}`);

async function main(): Promise<void> {
  const lab = new Lab();
  try {
    const sw = await lab.switch('vsw');
    const hosts = [await lab.host('vh1', sw), await lab.host('vh2', sw)];
    const conf = (vlan: number, host: number): object => ({
      cniVersion: '1.1.0', name: `demo-vlan${vlan}`, type: 'knit-macvlan', master: 'eth0', vlan, runDir: `/run/knit-demo-${host}`,
      ipam: { type: 'knit-host-local', dataDir: `/run/knit-demo-ipam-${host}`, ranges: [[{ subnet: '10.77.0.0/24', rangeStart: `10.77.0.${vlan === 100 ? 10 : 20}${host}`, rangeEnd: `10.77.0.${vlan === 100 ? 10 : 20}${host}` }]] },
    });
    const pods = new Map<string, { pod: Netns; ip: string }>();
    for (const [h, host] of hosts.entries()) {
      for (const vlan of [100, 200]) {
        const pod = await lab.pod(`v${vlan}h${h}`);
        const r = await lab.runPlugin(host, join(BIN, 'knit-macvlan'), { command: 'ADD', containerId: `v${vlan}-${h}`, netns: pod.path, ifName: 'eth0', path: [BIN], conf: conf(vlan, h) });
        if (r.code !== 0) throw new Error(`ADD failed: ${r.stdout || r.stderr}`);
        const ip = String(r.json.ips[0].address).split('/')[0]!;
        pods.set(`${vlan}/${h}`, { pod, ip });
        say(`host ${h + 1}: VLAN ${vlan} pod ${ip}`);
      }
    }
    say((await lab.ip(hosts[0]!, ['-d', '-br', 'link', 'show', 'type', 'vlan'])).trim().replace(/\s+/g, ' ') || 'no vlan link');
    for (const [a, b, what] of [['100/0', '100/1', 'VLAN 100 → VLAN 100 across hosts'], ['200/0', '200/1', 'VLAN 200 → VLAN 200 across hosts'], ['100/0', '200/1', 'VLAN 100 → VLAN 200 (same subnet)']] as const) {
      const ok = await lab.ping(pods.get(a)!.pod, pods.get(b)!.ip, 1);
      say(`${what}: ${ok ? 'reached' : 'not reached'}`);
    }
  } finally {
    await lab.cleanup();
  }
}

main().catch((e) => { console.error(`vlan demo failed: ${(e as Error).message}`); process.exitCode = 1; });
