// The encrypted overlay's lab, shared by test/kernel/encryption.test.ts and
// scripts/bench/overlay-esp.ts: two hosts on an underlay switch, a pod behind each host's bridge,
// the vxlan backend driven directly with a static peer list (as scripts/bench/overlay-iperf.ts),
// a capture of the underlay through an AF_PACKET socket (tcpdump is not installed here), iperf3.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Lab, Host, Netns, Switch } from '../lab/lab';
import { newBackend, type Backend, type BackendConfig, type Peer } from '../../pkg/agent/backend';
import { native } from '../../pkg/netlink/native';

export const UPLINK = 'ens33';

export interface Side {
  name: string;
  host: Host;
  pod: Netns;
  subnet: string;
  podIp: string;
  stateDir: string;
  backend?: Backend;
}

export interface Pair { sw: Switch; sides: [Side, Side] }

/** Switch, two hosts (uplink ens33, 192.168.<base>.1-2, MTU `mtu` or 1500), a pod behind each host's bridge knit-ov0. */
export async function pairTopology(lab: Lab, base: number, tmp: string, mtu?: number): Promise<Pair> {
  const sw = await lab.switch(`sw${base}`);
  const sides: Side[] = [];
  for (let i = 1; i <= 2; i++) {
    const host = await lab.host(`h${base}-${i}`, sw, { address: `192.168.${base}.${i}/24`, ifName: UPLINK, ...(mtu ? { mtu } : {}) });
    const pod = await lab.pod(`p${base}-${i}`);
    const br = `10.${base}.${i}.1`;
    await lab.ip(host, ['link', 'add', 'knit-ov0', 'type', 'bridge']);
    await lab.ip(host, ['addr', 'add', `${br}/24`, 'dev', 'knit-ov0']);
    await lab.ip(host, ['link', 'set', 'knit-ov0', 'up']);
    await lab.ip(host, ['link', 'add', 'vpod', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
    await lab.ip(host, ['link', 'set', 'vpod', 'master', 'knit-ov0', 'up']);
    await lab.ip(pod, ['addr', 'add', `10.${base}.${i}.2/24`, 'dev', 'eth0']);
    await lab.ip(pod, ['link', 'set', 'eth0', 'up']);
    await lab.ip(pod, ['route', 'add', 'default', 'via', br]);
    const stateDir = path.join(tmp, `state-${base}-${i}`);
    fs.mkdirSync(stateDir, { recursive: true });
    sides.push({ name: `n${base}-${i}`, host, pod, subnet: `10.${base}.${i}.0/24`, podIp: `10.${base}.${i}.2`, stateDir });
  }
  return { sw, sides: sides as [Side, Side] };
}

/** A backend for a side (replacing its previous one), its local datapath made; pod MTUs follow. */
export async function startBackend(lab: Lab, s: Side, cfg: BackendConfig, opts: { retireGraceMs?: number; generation?: number } = {}): Promise<number> {
  s.backend?.close();
  s.backend = newBackend(cfg, { netns: s.host.path, stateDir: s.stateDir, ...(opts.retireGraceMs !== undefined ? { retireGraceMs: opts.retireGraceMs } : {}) });
  if (opts.generation !== undefined) s.backend.setKeyGeneration?.(opts.generation);
  const st = s.backend.ensureLocal({ nodeName: s.name, subnet: s.subnet, underlayIface: UPLINK, underlayAddr: s.host.address! });
  for (const [ns, dev] of [[s.host, 'vpod'], [s.host, 'knit-ov0'], [s.pod, 'eth0']] as const) await lab.ip(ns, ['link', 'set', dev, 'mtu', String(st.mtu)]);
  return st.mtu;
}

/** What a side publishes in its lease (as its peers would read it from the datastore). */
export function leaseOf(s: Side, drop: string[] = []): Peer {
  const data = { ...s.backend!.leaseData(s.name) };
  for (const k of drop) delete data[k];
  return { nodeName: s.name, subnet: s.subnet, underlayAddr: s.host.address!, backendData: data };
}

/** Counts of what crossed the underlay switch, between the two host addresses. */
export interface Capture { esp: number; clearVxlan: number; otherUdp: number; frames: number }

/**
 * Captures every frame on the switch namespace's links (ports and bridge) until stopped, draining
 * the socket every 10 ms while the caller's traffic runs in child processes.
 */
export function startCapture(sw: Netns, ports: number[]): { stop(): Capture } {
  const N = native();
  const fd = N.openPacketSocket(sw.path, null);
  const buf = Buffer.allocUnsafe(256 * 1024);
  const c: Capture = { esp: 0, clearVxlan: 0, otherUdp: 0, frames: 0 };
  const drain = (): void => {
    for (;;) {
      const n = N.recv(fd, buf, true);
      if (n < 0) return;
      if (n < 34 || buf.readUInt16BE(12) !== 0x0800) continue;
      c.frames++;
      const ihl = (buf[14]! & 0x0f) * 4;
      const proto = buf[23]!;
      if (proto === 50) c.esp++;
      else if (proto === 17 && n >= 14 + ihl + 4) {
        const dport = buf.readUInt16BE(14 + ihl + 2);
        if (ports.includes(dport)) c.clearVxlan++; else c.otherUdp++;
      }
    }
  };
  const t = setInterval(drain, 10);
  return {
    stop() {
      clearInterval(t);
      drain();
      N.close(fd);
      return c;
    },
  };
}

/** The kernel's xfrm counters of a namespace (/proc/net/xfrm_stat), e.g. XfrmInNoStates. */
export async function xfrmStat(lab: Lab, ns: Netns): Promise<Record<string, number>> {
  const r = await lab.exec(ns, 'cat', ['/proc/net/xfrm_stat'], { allowFail: true });
  const out: Record<string, number> = {};
  for (const l of r.stdout.split('\n')) { const m = /^(\w+)\s+(\d+)/.exec(l); if (m) out[m[1]!] = Number(m[2]); }
  return out;
}

export interface IperfResult { ok: boolean; gbps: number; intervals: number[]; retransmits: number; error?: string; cpu?: { host: number; remote: number } }

/**
 * iperf3 TCP from `client` to `addr` (a one-off server in `server`) for `seconds`; `during` runs
 * meanwhile (rotation). Intervals: bits per second per second of the stream.
 */
export async function iperf(lab: Lab, server: Netns, client: Netns, addr: string, seconds: number, during?: () => Promise<void>): Promise<IperfResult> {
  const srv = spawn('ip', ['netns', 'exec', server.name, 'iperf3', '-s', '-1'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 700));
    const run = lab.exec(client, 'iperf3', ['-c', addr, '-t', String(seconds), '-i', '1', '-J'], { timeoutMs: (seconds + 30) * 1000, allowFail: true });
    if (during) await during();
    const r = await run;
    let j: any;
    try { j = JSON.parse(r.stdout); } catch { return { ok: false, gbps: 0, intervals: [], retransmits: 0, error: `exit ${r.code}: ${r.stderr.trim() || r.stdout.trim().slice(0, 300)}` }; }
    if (j.error) return { ok: false, gbps: 0, intervals: [], retransmits: 0, error: String(j.error) };
    const intervals = (j.intervals ?? []).map((i: any) => i.sum?.bits_per_second ?? 0);
    const cpu = j.end?.cpu_utilization_percent;
    return {
      ok: r.code === 0, gbps: j.end.sum_received.bits_per_second / 1e9, intervals, retransmits: j.end.sum_sent?.retransmits ?? 0,
      ...(cpu ? { cpu: { host: cpu.host_total, remote: cpu.remote_total } } : {}),
    };
  } finally {
    srv.kill('SIGKILL');
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
