// Throughput across hosts: iperf3 (Debian) TCP, host to host over the underlay vs pod to pod
// over VXLAN vs pod to pod over host-gw routes, in lab namespaces (two hosts on an underlay
// switch, a pod behind each host's bridge; the datapath programmed by knit's backends with a
// static peer list), and pod to pod on a named L2 overlay network (issue 12: etcd and knitd on two
// lab hosts, the network made by `knitctl network create -d overlay`, the pods ADDed by
// knit-l2overlay from the rendered conflists through knitd). Goals: routed overlay ≥ 90 % of
// underlay; L2 overlay within 5 % of the routed overlay (vxlan) in the same run.
//   node --import tsx scripts/bench/overlay-iperf.ts [--seconds 5] [--rounds 3] [--out DIR]
// The rounds interleave the four paths; the median per path is reported.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, type Host, type Netns } from '../../test/lab/lab';
import { newBackend, type Backend, type BackendConfig } from '../../pkg/agent/backend';
import { EtcdCluster } from '../../test/lab/etcd';
import { conflistFile } from '../../pkg/network/conflist';
import { startKnitd, type BenchKnitd } from './knitd';
import { cleanEnv } from './runner';
import { arg } from './script';

const ROOT = path.resolve(__dirname, '../..');

interface Side { host: Host; pod: Netns; subnet: string; podIp: string; backend?: Backend }

async function topology(lab: Lab, base: number): Promise<Side[]> {
  const sw = await lab.switch(`sw${base}`);
  const sides: Side[] = [];
  for (let i = 1; i <= 2; i++) {
    const host = await lab.host(`h${base}-${i}`, sw, { address: `192.168.${base}.${i}/24` });
    const pod = await lab.pod(`p${base}-${i}`);
    const subnet = `10.${base}.${i}.0/24`;
    await lab.ip(host, ['link', 'add', 'knit-ov0', 'type', 'bridge']);
    await lab.ip(host, ['addr', 'add', `10.${base}.${i}.1/24`, 'dev', 'knit-ov0']);
    await lab.ip(host, ['link', 'set', 'knit-ov0', 'up']);
    await lab.ip(host, ['link', 'add', 'vpod', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
    await lab.ip(host, ['link', 'set', 'vpod', 'master', 'knit-ov0', 'up']);
    await lab.ip(pod, ['addr', 'add', `10.${base}.${i}.2/24`, 'dev', 'eth0']);
    await lab.ip(pod, ['link', 'set', 'eth0', 'up']);
    await lab.ip(pod, ['route', 'add', 'default', 'via', `10.${base}.${i}.1`]);
    sides.push({ host, pod, subnet, podIp: `10.${base}.${i}.2` });
  }
  return sides;
}

async function program(lab: Lab, sides: Side[], cfg: BackendConfig): Promise<void> {
  const peers = [];
  for (const [i, s] of sides.entries()) {
    s.backend = newBackend(cfg, { netns: s.host.path });
    const st = s.backend.ensureLocal({ nodeName: `n${i}`, subnet: s.subnet, underlayIface: 'eth0', underlayAddr: s.host.address! });
    for (const [ns, dev] of [[s.host, 'vpod'], [s.host, 'knit-ov0'], [s.pod, 'eth0']] as const) await lab.ip(ns, ['link', 'set', dev, 'mtu', String(st.mtu)]);
    peers.push({ nodeName: `n${i}`, subnet: s.subnet, underlayAddr: s.host.address!, backendData: s.backend.leaseData(`n${i}`) });
  }
  for (const s of sides) s.backend!.sync(peers);
}

interface L2 { server: Netns; client: Netns; serverIp: string; vni: number; mtu: number }

/** Two lab hosts with knitd on etcd, a named overlay network, a pod on it behind each host. */
async function l2overlay(lab: Lab, base: number, tmp: string, agents: BenchKnitd[], etcds: EtcdCluster[]): Promise<L2> {
  const bin = path.join(ROOT, 'dist/bin');
  const sw = await lab.switch(`sw${base}`);
  const etcdHost = await lab.host(`e${base}`, sw, { address: `192.168.${base}.100/24` });
  const etcd = await EtcdCluster.start({ netns: etcdHost, host: `192.168.${base}.100` });
  etcds.push(etcd);
  const endpoint = etcd.endpoints[0]!;
  const common = ['--etcd-endpoints', endpoint, '--etcd-prefix', '/knio', '--iface', 'eth0', '--log-level', 'info'];
  const nodes: Array<{ host: Host; dir: string }> = [];
  for (let i = 1; i <= 2; i++) {
    const host = await lab.host(`h${base}-${i}`, sw, { address: `192.168.${base}.${i}/24` });
    const dir = fs.mkdtempSync(path.join(tmp, `n${i}-`));
    agents.push(await startKnitd(ROOT, host, [...common, '--node-name', `l2n${i}`, '--cni-socket-dir', path.join(dir, 'run/cni'), '--run-dir', path.join(dir, 'run'),
      '--state-dir', path.join(dir, 'state'), '--cni-conf-dir', path.join(dir, 'net.d')]));
    nodes.push({ host, dir });
  }
  const made = await lab.exec(nodes[0]!.host, path.join(bin, 'knitctl'), ['--etcd-endpoints', endpoint, '--etcd-prefix', '/knio', 'network', 'create', '-d', 'overlay',
    '--subnet', `10.${base}.0.0/16`, 'iperfnet'], { allowFail: true, env: cleanEnv() });
  if (made.code !== 0) throw new Error(`knitctl network create iperfnet: ${made.stderr}${made.stdout}`);
  const pods: Array<{ pod: Netns; ip: string }> = [];
  let conf: Record<string, unknown> = {};
  for (const [i, n] of nodes.entries()) {
    const cl = path.join(n.dir, 'net.d', conflistFile('iperfnet'));
    for (let t = 0; t < 300 && !fs.existsSync(cl); t++) await new Promise((r) => setTimeout(r, 100));
    const j = JSON.parse(fs.readFileSync(cl, 'utf8')) as { cniVersion: string; name: string; plugins: Array<Record<string, unknown>> };
    conf = { cniVersion: j.cniVersion, name: j.name, ...j.plugins[0]! };
    const pod = await lab.pod(`l${base}-${i + 1}`);
    let r = await lab.runPlugin(n.host, path.join(bin, 'knit-l2overlay'), {
      command: 'ADD', containerId: `iperf${i}`, netns: pod.path, ifName: 'eth0', path: [bin], conf, args: `IgnoreUnknown=1;K8S_POD_NAME=iperf${i}`,
      env: { ...cleanEnv(), KNIT_CNI_SOCKET_DIR: path.join(n.dir, 'run/cni') },
    });
    // knitd may still be building the network's bridge/VXLAN device right after the conflist appeared.
    for (let t = 0; t < 20 && r.code !== 0; t++) {
      await new Promise((res) => setTimeout(res, 500));
      r = await lab.runPlugin(n.host, path.join(bin, 'knit-l2overlay'), {
        command: 'ADD', containerId: `iperf${i}`, netns: pod.path, ifName: 'eth0', path: [bin], conf, args: `IgnoreUnknown=1;K8S_POD_NAME=iperf${i}`,
        env: { ...cleanEnv(), KNIT_CNI_SOCKET_DIR: path.join(n.dir, 'run/cni') },
      });
    }
    if (r.code !== 0) throw new Error(`knit-l2overlay ADD on host ${i + 1}: ${r.stdout}${r.stderr}`);
    pods.push({ pod, ip: String(r.json.ips[0].address).split('/')[0]! });
  }
  // Remote endpoints are programmed by knitd (FDB + neighbour): wait until the pods reach each other.
  let ok = false;
  for (let t = 0; t < 60 && !ok; t++) {
    ok = (await lab.exec(pods[0]!.pod, 'ping', ['-c', '1', '-W', '1', pods[1]!.ip], { allowFail: true })).code === 0;
  }
  if (!ok) throw new Error(`L2 overlay pods ${pods[0]!.ip} -> ${pods[1]!.ip}: no ping after 60 tries`);
  const [link] = await lab.ipJson(pods[0]!.pod, ['link', 'show', 'eth0']);
  return { client: pods[0]!.pod, server: pods[1]!.pod, serverIp: pods[1]!.ip, vni: Number(conf.vni), mtu: Number(link.mtu) };
}

async function iperf(lab: Lab, server: Netns, client: Netns, addr: string, seconds: number): Promise<number> {
  const srv = spawn('ip', ['netns', 'exec', server.name, 'iperf3', '-s', '-1'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const r = await lab.exec(client, 'iperf3', ['-c', addr, '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
    const j = JSON.parse(r.stdout);
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    srv.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '5'));
  const rounds = Number(arg('rounds', '3'));
  const out = path.resolve(arg('out', path.join(ROOT, 'bench/results')));
  const lab = new Lab();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-iperf-'));
  const agents: BenchKnitd[] = [];
  const etcds: EtcdCluster[] = [];
  try {
    const vx = await topology(lab, 71);
    await program(lab, vx, { type: 'vxlan', vni: 1 });
    const hg = await topology(lab, 72);
    await program(lab, hg, { type: 'host-gw' });
    const l2 = await l2overlay(lab, 73, tmp, agents, etcds);
    const res: Record<string, number[]> = { underlay: [], vxlan: [], 'host-gw': [], 'L2 overlay network, knit-l2overlay': [] };
    for (let r = 0; r < rounds; r++) {
      res.underlay!.push(await iperf(lab, vx[1]!.host, vx[0]!.host, vx[1]!.host.address!, seconds));
      res.vxlan!.push(await iperf(lab, vx[1]!.pod, vx[0]!.pod, vx[1]!.podIp, seconds));
      res['host-gw']!.push(await iperf(lab, hg[1]!.pod, hg[0]!.pod, hg[1]!.podIp, seconds));
      res['L2 overlay network, knit-l2overlay']!.push(await iperf(lab, l2.server, l2.client, l2.serverIp, seconds));
      console.log(`round ${r + 1}: ${Object.entries(res).map(([k, v]) => `${k} ${v[v.length - 1]!.toFixed(2)} Gbit/s`).join(', ')}`);
    }
    const med = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
    const u = med(res.underlay!);
    const l2ratio = med(res['L2 overlay network, knit-l2overlay']!) / med(res.vxlan!);
    const md = [
      '# Overlay throughput (iperf3 TCP)', '',
      `${new Date().toISOString()} · ${os.hostname()} · ${os.cpus().length} CPUs · load ${os.loadavg()[0]!.toFixed(2)} · ${rounds} interleaved rounds of ${seconds} s; medians`, '',
      'Lab namespaces on one machine (veth underlay, MTU 1500): the numbers compare paths, not NICs.', '',
      '| path | Gbit/s | of underlay |', '|---|---:|---:|',
      ...Object.entries(res).map(([k, v]) => `| ${k === 'underlay' ? 'host → host (underlay)' : `pod → pod (${k})`} | ${med(v).toFixed(2)} | ${((med(v) / u) * 100).toFixed(0)} % |`),
      '', `L2 overlay network (knitd + knit-l2overlay, VNI ${l2.vni}, pod MTU ${l2.mtu}) vs routed overlay (vxlan): ${(l2ratio * 100).toFixed(1)} % ` +
        `(${l2ratio >= 0.95 ? 'within' : 'not within'} the 5 % goal); median of the per-round ratios ${(med(res.vxlan!.map((v, i) => res['L2 overlay network, knit-l2overlay']![i]! / v)) * 100).toFixed(1)} %; per round: ${res.vxlan!.map((v, i) => `${(res['L2 overlay network, knit-l2overlay']![i]! / v * 100).toFixed(0)} %`).join(', ')}`,
      '', 'Goals: overlay ≥ 90 % of underlay; L2 overlay network within 5 % of the routed overlay (vxlan).', '',
    ].join('\n');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, 'overlay-iperf.json'), JSON.stringify({ date: new Date().toISOString(), load: os.loadavg(), seconds, rounds, gbps: res, l2OverVxlan: l2ratio }, null, 2) + '\n');
    fs.writeFileSync(path.join(out, 'overlay-iperf.md'), md);
    console.log(md);
  } finally {
    for (const a of agents) await a.stop().catch(() => undefined);
    for (const e of etcds) await e.stop().catch(() => undefined);
    await lab.cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
