// `npm run demo`: knit on a lab of network namespaces. A node (its own netns, standing in for
// a host) gets two pods on a knit-bridge network, exactly as a runtime would call the plugin;
// the demo shows what was created, the pods talking, a CNI error, and that DEL leaves nothing.
// Everything lives in namespaces named knt<4 hex>-... and is removed at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Lab, type Netns } from '../test/lab/lab';

const BIN = resolve(__dirname, '../dist/bin');
const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (s: string): void => console.log(`\n${bold('== ' + s)}`);
const indent = (s: string): string => s.trimEnd().split('\n').map((l) => '   ' + l).join('\n');

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
  } finally {
    await lab.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
    step('lab removed');
  }
}

main().catch((e) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exitCode = 1;
});
