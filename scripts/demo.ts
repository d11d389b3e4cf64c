// `npm run demo`: knit on a lab of network namespaces. A node (its own netns, standing in for
// a host) gets two pods on a knit-bridge network, exactly as a runtime would call the plugin;
// the demo shows what was created, the pods talking, a CNI error, and that DEL leaves nothing.
// Then knit-macvlan, the overlay (demo-overlay.ts), named networks across hosts (demo-networks.ts), the same with no datastore (demo-mesh.ts), knitd on the Kubernetes API with the IPAM pod
// GC (demo-kubernetes.ts) and 802.1Q VLANs in the kernel lane (demo-vlan.ts).
// Everything lives in namespaces named knt<4 hex>-... and is removed at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Lab, run, type Netns } from '../test/lab/lab';
import { overlayDemo } from './demo-overlay';
import { networksDemo } from './demo-networks';
import { meshDemo } from './demo-mesh';
import { kubernetesDemo } from './demo-kubernetes';
import { BIN, indent, step } from './demo-ui';


async function main(): Promise<void> {
  const lab = new Lab();
  const dataDir = mkdtempSync(join(tmpdir(), 'knit-demo-'));
  const conf = {
    cniVersion: '1.1.0',
    name: 'demo',
    type: 'knit-bridge',
    bridge: 'knit0',
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: true,
    hairpinMode: true,
    ipam: {
      type: 'knit-host-local',
      dataDir,
      ranges: [[{ subnet: '10.88.0.0/24' }], [{ subnet: 'fd88::/64' }]],
      exclude: ['10.88.0.2'],
    },
  };
  try {
    step('a lab: one node and two pods, each its own network namespace');
    const node = await lab.netns('node');
    const pods: Netns[] = [await lab.pod('pod-a'), await lab.pod('pod-b')];
    console.log(indent([node, ...pods].map((n) => n.name).join('\n')));

    step('knit-bridge VERSION (what podman asks every plugin before each command)');
    const v = await lab.runPlugin(node, join(BIN, 'knit-bridge'), { command: 'VERSION', conf: { cniVersion: '1.1.0' } });
    console.log(indent(v.stdout));

    step('ADD each pod to the network "demo" (knit-bridge + in-process knit-host-local, dual stack)');
    const ips: string[][] = [];
    let last: unknown;
    for (const [i, pod] of pods.entries()) {
      const t0 = process.hrtime.bigint();
      const r = await lab.runPlugin(node, join(BIN, 'knit-bridge'), {
        command: 'ADD', containerId: `demo-${i}`, netns: pod.path, ifName: 'eth0', path: [BIN], conf,
      });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.code !== 0) throw new Error(`ADD failed: ${r.stdout || r.stderr}`);
      last = r.json;
      ips.push(r.json.ips.map((x: { address: string }) => x.address.split('/')[0]));
      console.log(indent(`${pod.name}: ${r.json.ips.map((x: { address: string }) => x.address).join(', ')}  (${ms.toFixed(1)} ms, process start included)`));
    }
    console.log(indent('the result of the last ADD, as the runtime gets it:'));
    console.log(indent(indent(JSON.stringify(last, null, 1).replace(/\n\s*/g, ' '))));

    step('what the node has now');
    console.log(indent(await lab.ip(node, ['-br', 'link'])));
    console.log(indent(await lab.ip(node, ['-br', 'addr', 'show', 'knit0'])));
    console.log(indent((await lab.exec(node, 'nft', ['list', 'table', 'inet', 'knit-nat'])).stdout));
    step('inside pod-a');
    console.log(indent(await lab.ip(pods[0]!, ['-br', 'addr'])));
    console.log(indent(await lab.ip(pods[0]!, ['route'])));
    console.log(indent(await lab.ip(pods[0]!, ['-6', 'route', 'show', 'default'])));

    step('pod-a pings pod-b over IPv4 and IPv6');
    for (const addr of ips[1]!) {
      const p = await lab.exec(pods[0]!, 'ping', ['-c', '2', '-i', '0.2', '-W', '1', ...(addr.includes(':') ? ['-6'] : []), addr], { allowFail: true });
      console.log(indent(p.stdout.split('\n').filter((l) => /bytes from|packet loss/.test(l)).join('\n')));
    }

    step('a mistake in the config is a CNI error naming the key, the value and what is valid');
    const bad = await lab.runPlugin(node, join(BIN, 'knit-bridge'), {
      command: 'ADD', containerId: 'demo-bad', netns: pods[0]!.path, ifName: 'eth1', path: [BIN], conf: { ...conf, mtu: 20 },
    });
    console.log(indent(`exit ${bad.code}: ${bad.stdout}`));

    step('DEL both pods (twice: DEL is idempotent), then look again');
    for (let round = 0; round < 2; round++) {
      for (const [i, pod] of pods.entries()) {
        const r = await lab.runPlugin(node, join(BIN, 'knit-bridge'), { command: 'DEL', containerId: `demo-${i}`, netns: pod.path, ifName: 'eth0', path: [BIN], conf });
        if (r.code !== 0) throw new Error(`DEL failed: ${r.stdout || r.stderr}`);
      }
    }
    console.log(indent(await lab.ip(node, ['-br', 'link'])));
    console.log(indent((await lab.exec(node, 'nft', ['list', 'table', 'inet', 'knit-nat'])).stdout.split('\n').filter((l) => /elements|chain n_/.test(l)).join('\n') || 'no masquerade entry left for "demo"'));
    console.log(indent(`addresses still reserved: ${(await lab.exec(null, 'sh', ['-c', `ls ${dataDir}/demo/ips 2>/dev/null | wc -l`])).stdout.trim()}`));

    await macvlanDemo(lab, dataDir);
    await overlayDemo();
    await networksDemo();
    await meshDemo();
    await kubernetesDemo();
    await vlanDemo();
  } finally {
    await lab.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
    step('lab removed');
  }
}

/** knit-macvlan: two lab hosts on an underlay switch, one pod each on a macvlan of the host's eth0. */
async function macvlanDemo(lab: Lab, dataDir: string): Promise<void> {
  step('knit-macvlan: two hosts on an underlay switch, one pod on each, macvlan children of eth0');
  const sw = await lab.switch('mv-sw');
  const hosts = [await lab.host('mv-h1', sw, { address: '10.89.0.1/24' }), await lab.host('mv-h2', sw, { address: '10.89.0.2/24' })];
  const pods = [await lab.pod('mv-pod1'), await lab.pod('mv-pod2')];
  const conf = (i: number): Record<string, unknown> => ({
    cniVersion: '1.1.0', name: 'demo-macvlan', type: 'knit-macvlan', master: 'eth0', mode: 'bridge', runDir: join(dataDir, 'run'),
    // One subnet on the underlay, each host handing out its own part of it.
    ipam: { type: 'knit-host-local', dataDir: join(dataDir, `mv-h${i + 1}`), ranges: [[{ subnet: '10.89.0.0/24', rangeStart: `10.89.0.${(i + 1) * 10}`, rangeEnd: `10.89.0.${(i + 1) * 10 + 9}` }]] },
  });
  const ips: string[] = [];
  for (const [i, pod] of pods.entries()) {
    const t0 = process.hrtime.bigint();
    const r = await lab.runPlugin(hosts[i]!, join(BIN, 'knit-macvlan'), { command: 'ADD', containerId: `mv-${i}`, netns: pod.path, ifName: 'eth0', path: [BIN], conf: conf(i) });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.code !== 0) throw new Error(`knit-macvlan ADD failed: ${r.stdout || r.stderr}`);
    ips.push(r.json.ips[0].address.split('/')[0]);
    console.log(indent(`${pod.name} on ${hosts[i]!.name}: ${r.json.ips[0].address}, mac ${r.json.interfaces[0].mac}  (${ms.toFixed(1)} ms)`));
  }
  console.log(indent((await lab.exec(null, 'ip', ['-n', pods[0]!.name, '-d', '-br', 'link', 'show', 'eth0'])).stdout));
  console.log(indent((await lab.exec(null, 'sh', ['-c', `ip -n ${pods[0]!.name} -d link show eth0 | grep -o 'macvlan mode [a-z]*'`])).stdout));
  step('pod on host 1 pings pod on host 2 across the underlay');
  const p = await lab.exec(pods[0]!, 'ping', ['-c', '2', '-i', '0.2', '-W', '1', ips[1]!], { allowFail: true });
  console.log(indent(p.stdout.split('\n').filter((l) => /bytes from|packet loss/.test(l)).join('\n')));
  step('with "vlan": 100 the macvlan goes on the 802.1Q sub-interface eth0.100 (created, and removed after its last pod)');
  const v = await lab.runPlugin(hosts[0]!, join(BIN, 'knit-macvlan'), {
    command: 'ADD', containerId: 'mv-vlan', netns: pods[0]!.path, ifName: 'eth1', path: [BIN], conf: { ...conf(0), vlan: 100 },
  });
  console.log(indent(v.code === 0
    ? `this kernel has 8021q: ${JSON.stringify(v.json.ips)}; ${(await lab.ip(hosts[0]!, ['-br', 'link', 'show', 'eth0.100'])).trim()}`
    : `exit ${v.code}: ${v.stdout}\n(this kernel lacks 8021q; scripts/kernel-run runs the VLAN suites under a kernel that has it)`));
  for (const [i, pod] of pods.entries()) {
    await lab.runPlugin(hosts[i]!, join(BIN, 'knit-macvlan'), { command: 'DEL', containerId: `mv-${i}`, netns: pod.path, ifName: 'eth0', path: [BIN], conf: conf(i) });
  }
  await lab.runPlugin(hosts[0]!, join(BIN, 'knit-macvlan'), { command: 'DEL', containerId: 'mv-vlan', netns: pods[0]!.path, ifName: 'eth1', path: [BIN], conf: { ...conf(0), vlan: 100 } });
  console.log(indent(`after DEL, host 1 has: ${(await lab.ip(hosts[0]!, ['-br', 'link'])).trim().split('\n').map((l) => l.split(/\s+/)[0]).join(' ')}`));
}

/** VLANs need 802.1Q, which this machine's kernel may lack: shown inside the kernel lane when it can start. */
async function vlanDemo(): Promise<void> {
  step('802.1Q VLANs with knit-macvlan, inside the kernel lane (a 6.1 kernel with 8021q, booted as a process)');
  const root = resolve(__dirname, '..');
  const r = await run(join(root, 'scripts/kernel-run'), ['--timeout', '240', '--', process.execPath, '--import', 'tsx', join(root, 'scripts/demo-vlan.ts')],
    { allowFail: true, timeoutMs: 300_000 });
  if (r.stderr.includes('kernel-run: cannot start')) {
    console.log(indent(`skipped: ${r.stderr.trim().split('\n').find((l) => l.includes('cannot start'))}`));
    return;
  }
  console.log(r.stdout.trimEnd());
  if (r.code !== 0) console.log(indent(`the lane exited ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`));
}

main().catch((e) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exitCode = 1;
});
