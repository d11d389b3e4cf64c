// The overlay part of `npm run demo`: etcd in its own namespace on an underlay switch, two lab
// hosts each running knitd (built executables), one pod per host through knit-overlay, a ping
// across the VXLAN overlay and `knitctl status`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab } from '../test/lab/lab';
import { EtcdCluster, haveEtcd } from '../test/lab/etcd';
import { BIN, indent, step, waitForLeases } from './demo-ui';


export async function overlayDemo(): Promise<void> {
  step('knit-overlay: two hosts, knitd on each, one network over VXLAN (state in etcd)');
  if (!haveEtcd()) { console.log(indent('skipped: needs Debian etcd-server (scripts/bootstrap installs it)')); return; }
  const lab = new Lab();
  const tmp = mkdtempSync(join(tmpdir(), 'knit-demo-overlay-'));
  const agents: ChildProcess[] = [];
  let etcd: EtcdCluster | undefined;
  try {
    const sw = await lab.switch();
    const etcdHost = await lab.host('etcd', sw, { address: '192.168.77.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.77.100' });
    const ep = etcd.endpoints[0]!;
    const hosts = [await lab.host('ov1', sw, { address: '192.168.77.1/24' }), await lab.host('ov2', sw, { address: '192.168.77.2/24' })];
    const ctl = async (args: string[], runDir?: string): Promise<string> =>
      (await lab.exec(hosts[0]!, join(BIN, 'knitctl'), ['--etcd-endpoints', ep, ...args, ...(runDir ? ['--run-dir', runDir] : [])], { env: { NODE_EXTRA_CA_CERTS: undefined } })).stdout;
    const net = join(tmp, 'network.json');
    writeFileSync(net, JSON.stringify({ network: '10.216.0.0/16', subnetLen: 24, backend: { type: 'vxlan', vni: 1 } }));
    console.log(indent(await ctl(['pod-network', 'set', net])));
    const runDirs = hosts.map((h) => join(tmp, h.name, 'run'));
    for (const [i, h] of hosts.entries()) {
      const p = spawn('ip', ['netns', 'exec', h.name, join(BIN, 'knitd'), '--cni-socket-dir', join(tmp, h.name, 'cni'), '--etcd-endpoints', ep,
        '--node-name', `node${i + 1}`, '--iface', 'eth0', '--run-dir', runDirs[i]!, '--state-dir', join(tmp, h.name, 'state')], { stdio: 'ignore' });
      agents.push(p);
    }
    await waitForLeases(runDirs);
    await new Promise((r) => setTimeout(r, 500));
    const ips: string[] = [];
    for (const [i, h] of hosts.entries()) {
      const pod = await lab.pod(`ovpod${i + 1}`);
      const r = await lab.runPlugin(h, join(BIN, 'knit-overlay'), {
        command: 'ADD', containerId: `ov-${i}`, netns: pod.path, ifName: 'eth0', path: [BIN],
        conf: { cniVersion: '1.1.0', name: 'overlay', type: 'knit-overlay', runDir: runDirs[i], ipam: { type: 'knit-host-local', dataDir: join(tmp, h.name, 'ipam') } },
        env: { KNIT_CNI_SOCKET_DIR: join(tmp, 'none') },
      });
      if (r.code !== 0) throw new Error(`ADD failed: ${r.stdout || r.stderr}`);
      ips.push(r.json.ips[0].address.split('/')[0]);
      console.log(indent(`${pod.name} on ${h.name}: ${r.json.ips[0].address}, mtu ${(await lab.ipJson(pod, ['link', 'show', 'eth0']))[0].mtu}`));
    }
    step('routes knitd programmed on ov1 (proto 107 = knit), and the VXLAN device');
    console.log(indent(await lab.ip(hosts[0]!, ['route', 'show', 'proto', '107'])));
    console.log(indent(await lab.ip(hosts[0]!, ['-d', '-br', 'link', 'show', 'knit.1'])));
    step('ovpod1 pings ovpod2 across the overlay (1400 bytes, don\'t fragment)');
    const p = await lab.exec({ name: `${lab.prefix}-ovpod1`, path: '' }, 'ping', ['-M', 'do', '-s', '1400', '-c', '2', '-i', '0.2', '-W', '1', ips[1]!], { allowFail: true });
    console.log(indent(p.stdout.split('\n').filter((l) => /bytes from|packet loss/.test(l)).join('\n')));
    step('knitctl status on ov1');
    console.log(indent(await ctl(['status'], runDirs[0])));
  } finally {
    for (const a of agents) a.kill('SIGTERM');
    await etcd?.stop();
    await lab.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  }
}
