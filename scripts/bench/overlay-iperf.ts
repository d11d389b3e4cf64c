// Throughput across hosts: iperf3 (Debian) TCP, host to host over the underlay vs pod to pod
// over VXLAN vs pod to pod over host-gw routes, in lab namespaces (two hosts on an underlay
// switch, a pod behind each host's bridge; the datapath programmed by knit's backends with a
// static peer list). Goal: overlay ≥ 90 % of underlay.
//   node --import tsx scripts/bench/overlay-iperf.ts [--seconds 5] [--rounds 3] [--out DIR]
// The rounds interleave the three paths; the median per path is reported.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, type Host, type Netns } from '../../test/lab/lab';
import { newBackend, type Backend, type BackendConfig } from '../../pkg/agent/backend';

const ROOT = path.resolve(__dirname, '../..');
const arg = (name: string, dflt: string): string => { const i = process.argv.indexOf(`--${name}`); return i >= 0 ? process.argv[i + 1]! : dflt; };

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
  try {
    const vx = await topology(lab, 71);
    await program(lab, vx, { type: 'vxlan', vni: 1 });
    const hg = await topology(lab, 72);
    await program(lab, hg, { type: 'host-gw' });
    const res: Record<string, number[]> = { underlay: [], vxlan: [], 'host-gw': [] };
    for (let r = 0; r < rounds; r++) {
      res.underlay!.push(await iperf(lab, vx[1]!.host, vx[0]!.host, vx[1]!.host.address!, seconds));
      res.vxlan!.push(await iperf(lab, vx[1]!.pod, vx[0]!.pod, vx[1]!.podIp, seconds));
      res['host-gw']!.push(await iperf(lab, hg[1]!.pod, hg[0]!.pod, hg[1]!.podIp, seconds));
      console.log(`round ${r + 1}: ${Object.entries(res).map(([k, v]) => `${k} ${v[v.length - 1]!.toFixed(2)} Gbit/s`).join(', ')}`);
    }
    const med = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
    const u = med(res.underlay!);
    const md = [
      '# Overlay throughput (iperf3 TCP)', '',
      `${new Date().toISOString()} · ${os.hostname()} · ${os.cpus().length} CPUs · load ${os.loadavg()[0]!.toFixed(2)} · ${rounds} interleaved rounds of ${seconds} s; medians`, '',
      'Lab namespaces on one machine (veth underlay, MTU 1500): the numbers compare paths, not NICs.', '',
      '| path | Gbit/s | of underlay |', '|---|---:|---:|',
      ...Object.entries(res).map(([k, v]) => `| ${k === 'underlay' ? 'host → host (underlay)' : `pod → pod (${k})`} | ${med(v).toFixed(2)} | ${((med(v) / u) * 100).toFixed(0)} % |`),
      '', 'Goal: overlay ≥ 90 % of underlay.', '',
    ].join('\n');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, 'overlay-iperf.json'), JSON.stringify({ seconds, rounds, gbps: res }, null, 2) + '\n');
    fs.writeFileSync(path.join(out, 'overlay-iperf.md'), md);
    console.log(md);
  } finally {
    await lab.cleanup();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
