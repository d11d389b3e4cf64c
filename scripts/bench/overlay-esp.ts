// Encrypted vs plain VXLAN throughput (issue 16), in the kernel lane (the host kernel has no
// ESP): two pairs of lab hosts in one lane boot, one with the vxlan backend plain, one with
// `encrypted: true` (ESP rfc4106(gcm(aes)) 128), iperf3 TCP pod to pod, rounds interleaved; the
// guest's CPU busy time from /proc/stat during each run gives the CPU cost per Gbit/s.
// Goal: encrypted ≥ 80 % of plain VXLAN in the same boot.
//   node --import tsx scripts/bench/overlay-esp.ts [--seconds 5] [--rounds 3] [--paths plain,esp,...] [--crypto] [--out DIR]
// (--crypto adds the kernel's own AEAD speeds, tcrypt: ~3 min more of the lane.)
// On the host it runs itself in the lane (scripts/kernel-run) and writes DIR/overlay-esp.{json,md}.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab } from '../../test/lab/lab';
import { get as backendFactory } from '../../pkg/agent/backend';
import { iperf, leaseOf, pairTopology, startBackend, UPLINK, type Pair } from '../../test/kernel/encryption-lab';
import type { Netns } from '../../test/lab/lab';
import { arg } from './script';

const ROOT = path.resolve(__dirname, '../..');
const MARK = '##overlay-esp ';

interface Run { gbps: number; busy: number; retransmits: number }

/**
 * The paths measured, each on its own pair of lab hosts in the same boot, rounds interleaved. The
 * goal's figure is esp against plain at the standard 1500 underlay; the others say where the CPU
 * goes: a 9000 (jumbo) underlay cuts the packets per byte by 6 (per-packet cost), GRO on the
 * underlay veths (as real NICs have it by default; veth has it off) lets esp4_offload decrypt in
 * GRO and re-aggregate the decrypted VXLAN/TCP packets before the stack (receive-side per-packet cost).
 */
interface PathSpec { label: string; mtu: number; encrypted: boolean; gro: boolean; cipher?: string }
const PATHS: Record<string, PathSpec> = {
  plain: { label: 'plain VXLAN', mtu: 1500, encrypted: false, gro: false },
  esp: { label: 'encrypted VXLAN (ESP AES-GCM-128)', mtu: 1500, encrypted: true, gro: false },
  'esp-gro': { label: 'encrypted, GRO on the underlay veths', mtu: 1500, encrypted: true, gro: true },
  'esp-chacha': { label: 'encrypted, cipher chacha20-poly1305', mtu: 1500, encrypted: true, gro: false, cipher: 'chacha20-poly1305' },
  'plain-9000': { label: 'plain VXLAN, 9000 underlay', mtu: 9000, encrypted: false, gro: false },
  'esp-9000': { label: 'encrypted, 9000 underlay', mtu: 9000, encrypted: true, gro: false },
};

function cpuTicks(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** IPv4 fragments made and reassembled in a namespace (/proc/net/snmp): 0 when the MTU is right. */
async function fragments(lab: Lab, ns: Netns): Promise<number> {
  const lines = (await lab.exec(ns, 'cat', ['/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Ip:'));
  const [head, vals] = [lines[0]!.split(/\s+/), lines[1]!.split(/\s+/).map(Number)];
  return ['FragCreates', 'ReasmReqds', 'FragFails'].reduce((n, k) => n + (vals[head.indexOf(k)] ?? 0), 0);
}

/** Turns GRO on for a link (ETHTOOL_SGRO; no ethtool binary here), in the namespace; whether it took (ETHTOOL_GGRO). */
async function enableGro(lab: Lab, ns: Netns, dev: string): Promise<true | string> {
  const py = [
    'import ctypes, fcntl, socket, struct, sys',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    'def call(cmd, val):',
    '    b = ctypes.create_string_buffer(struct.pack("II", cmd, val), 8)',
    '    fcntl.ioctl(s.fileno(), 0x8946, struct.pack("16sQ", sys.argv[1].encode(), ctypes.addressof(b)))',
    '    return struct.unpack("II", b.raw[:8])[1]',
    'call(0x2c, 1)',
    'print(call(0x2b, 0))',
  ].join('\n');
  const r = await lab.exec(ns, 'python3', ['-c', py, dev], { allowFail: true, timeoutMs: 120_000 });
  return r.code === 0 && r.stdout.trim() === '1' ? true : `exit ${r.code}: ${(r.stderr + r.stdout).trim().slice(-300)}`;
}

/** The kernel's own AEAD speed (tcrypt, 1420-byte blocks as ESP sees them), MB/s, by algorithm and direction. */
async function cryptoSpeed(): Promise<Record<string, { driver: string; encMBps: number; decMBps: number }>> {
  const out: Record<string, { driver: string; encMBps: number; decMBps: number }> = {};
  for (const mode of [211, 213]) {
    spawnSync('dmesg', ['-C']);
    spawnSync('/bin/busybox', ['modprobe', 'tcrypt', `mode=${mode}`, 'sec=1']); // always "fails" (EAGAIN) once done, by design
    let cur: { alg: string; dir: 'encMBps' | 'decMBps' } | null = null;
    for (const l of spawnSync('dmesg', [], { encoding: 'utf8' }).stdout.split('\n')) {
      const h = /testing speed of (rfc4106\(gcm\(aes\)\)|rfc7539esp\(chacha20,poly1305\)) \((.+)\) (encryption|decryption)/.exec(l);
      if (h) { cur = { alg: h[1]!, dir: h[3] === 'encryption' ? 'encMBps' : 'decMBps' }; out[h[1]!] ??= { driver: h[2]!, encMBps: 0, decMBps: 0 }; continue; }
      if (/testing speed of/.test(l)) { cur = null; continue; }
      const t = /1420 byte blocks\): \d+ operations in (\d+) seconds \((\d+) bytes\)/.exec(l);
      if (t && cur) out[cur.alg]![cur.dir] = Math.max(out[cur.alg]![cur.dir], Number(t[2]) / Number(t[1]) / 1e6);
    }
  }
  return out;
}

async function inLane(seconds: number, rounds: number, keys: string[], crypto: boolean): Promise<void> {
  const lab = new Lab();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-bench-esp-'));
  try {
    // GRO of ESP (decrypt in GRO, re-aggregate the decrypted packets) is esp4_offload's; the
    // kernel loads it on no request of its own. Without GRO on a device it changes nothing.
    if (keys.some((k) => PATHS[k]!.gro)) spawnSync('/bin/busybox', ['modprobe', 'esp4_offload']);
    const pairs: Record<string, Pair> = {};
    const mtus: Record<string, number> = {};
    const gro: Record<string, boolean> = {};
    for (const [i, k] of keys.entries()) {
      const spec = PATHS[k]!;
      const p = await pairTopology(lab, 71 + i, tmp, spec.mtu);
      pairs[k] = p;
      const cfg = backendFactory('vxlan').parseConfig({ type: 'vxlan', vni: 71 + i, ...(spec.encrypted ? { encrypted: true } : {}), ...(spec.cipher ? { cipher: spec.cipher } : {}) });
      for (const s of p.sides) mtus[k] = await startBackend(lab, s, cfg, { generation: 1 });
      if (spec.gro) {
        const why = (await Promise.all(p.sides.map((s) => enableGro(lab, s.host, UPLINK)))).filter((x) => x !== true);
        gro[k] = !why.length;
        if (why.length) console.error(`${k}: GRO not enabled: ${why.join('; ')}`);
      }
      const [a, b] = p.sides;
      for (let n = 0; n < 2; n++) { a.backend!.sync([leaseOf(b)]); b.backend!.sync([leaseOf(a)]); }
    }
    const res: Record<string, Run[]> = Object.fromEntries(keys.map((k) => [k, []]));
    const frags: Record<string, number> = {};
    for (const k of keys) frags[k] = -(await Promise.all(pairs[k]!.sides.map((s) => fragments(lab, s.host)))).reduce((x, y) => x + y, 0);
    for (let r = 0; r < rounds; r++) {
      for (const k of keys) {
        const [a, b] = pairs[k]!.sides;
        const t0 = cpuTicks();
        let x = await iperf(lab, b.pod, a.pod, b.podIp, seconds);
        // The one-off server may not listen yet on a loaded lane: once more, never more.
        if (!x.ok && /unable to connect/.test(x.error ?? '')) x = await iperf(lab, b.pod, a.pod, b.podIp, seconds);
        const t1 = cpuTicks();
        if (!x.ok) throw new Error(`${k}: iperf3: ${x.error}`);
        res[k]!.push({ gbps: x.gbps, busy: (t1.busy - t0.busy) / (t1.total - t0.total), retransmits: x.retransmits });
      }
    }
    for (const k of keys) frags[k]! += (await Promise.all(pairs[k]!.sides.map((s) => fragments(lab, s.host)))).reduce((x, y) => x + y, 0);
    for (const p of Object.values(pairs)) for (const s of p.sides) s.backend?.close();
    const aead = crypto ? await cryptoSpeed() : undefined;
    console.log(MARK + JSON.stringify({ seconds, rounds, mtus, gro, frags, cpus: os.cpus().length, kernel: os.release(), res, ...(aead ? { aead } : {}) }));
  } finally {
    await lab.cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const med = (v: number[]): number => { const s = [...v].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };

interface LaneResult {
  seconds: number; rounds: number; mtus: Record<string, number>; gro: Record<string, boolean>; frags: Record<string, number>; cpus: number; kernel: string;
  res: Record<string, Run[]>; aead?: Record<string, { driver: string; encMBps: number; decMBps: number }>;
}

function report(j: LaneResult, out: string, laneSeconds: number, cmd: string): void {
  const keys = Object.keys(j.res);
  const g = (k: string): number => med(j.res[k]!.map((r) => r.gbps));
  // Cores busy per Gbit/s: the guest's busy share of its CPUs times their number, over the rate.
  const cost = (k: string): number => med(j.res[k]!.map((r) => (r.busy * j.cpus) / r.gbps));
  const has = (k: string): boolean => keys.includes(k);
  const ratio = has('esp') && has('plain') ? g('esp') / g('plain') : NaN;
  const perRound = has('esp') && has('plain') ? j.res.plain!.map((p, i) => j.res.esp![i]!.gbps / p.gbps) : [];
  const base = (k: string): string => (PATHS[k]!.mtu === 9000 ? 'plain-9000' : 'plain');
  const lines = [
    '# Encrypted overlay throughput (iperf3 TCP, kernel lane)', '',
    `${new Date().toISOString()} · host ${os.hostname()} (${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(2)}) · guest: user-mode-linux ${j.kernel}, ${j.cpus} CPU · ${j.rounds} interleaved rounds of ${j.seconds} s; medians · lane total ${laneSeconds.toFixed(0)} s`,
    `Command: \`${cmd}\``, '',
    'Pod to pod across two lab hosts (each path its own pair) in one lane boot, the vxlan backend driven with a static peer list. UML has no AES-NI: its AES is `aes-generic` (C),',
    'and every packet of both hosts is handled by one emulated CPU, so the ratio, not the absolute rate, is the figure to read.', '',
    '| path | underlay MTU | pod MTU | Mbit/s | of plain (same MTU) | guest CPU busy | CPU-cores per Gbit/s | retransmits | IP fragments |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...keys.map((k) => `| ${PATHS[k]!.label}${PATHS[k]!.gro && !j.gro[k] ? ' (GRO NOT enabled)' : ''} | ${PATHS[k]!.mtu} | ${j.mtus[k]} | ${(g(k) * 1000).toFixed(0)} | ${has(base(k)) ? `${((g(k) / g(base(k))) * 100).toFixed(0)} %` : '-'} | ${(med(j.res[k]!.map((r) => r.busy)) * 100).toFixed(0)} % | ${cost(k).toFixed(1)} | ${med(j.res[k]!.map((r) => r.retransmits))} | ${j.frags[k]} |`),
    '',
  ];
  if (!Number.isNaN(ratio)) {
    lines.push(`Encrypted / plain at the standard MTU: ${(ratio * 100).toFixed(1)} % (goal ≥ 80 %: ${ratio >= 0.8 ? 'met' : 'NOT met'}); per round ${perRound.map((x) => `${(x * 100).toFixed(0)} %`).join(', ')}.`,
      `Encryption costs ${(cost('esp') / cost('plain')).toFixed(1)}× the CPU per Gbit/s of plain VXLAN here.`, '');
  }
  if (j.aead) {
    lines.push('The kernel\'s AEADs in this lane (tcrypt, 1420-byte blocks, one CPU):', '', '| AEAD | driver | encrypt MB/s | decrypt MB/s | both on one CPU, Mbit/s |', '|---|---|---:|---:|---:|');
    for (const [alg, a] of Object.entries(j.aead)) lines.push(`| ${alg} | ${a.driver} | ${a.encMBps.toFixed(0)} | ${a.decMBps.toFixed(0)} | ${((8 / (1 / a.encMBps + 1 / a.decMBps))).toFixed(0)} |`);
    lines.push('');
  }
  const md = lines.join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'overlay-esp.json'), JSON.stringify({ date: new Date().toISOString(), load: os.loadavg(), command: cmd, ...j, encryptedOverPlain: ratio }, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'overlay-esp.md'), md);
  console.log(md);
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '5'));
  const rounds = Number(arg('rounds', '3'));
  const keys = arg('paths', Object.keys(PATHS).join(',')).split(',');
  for (const k of keys) if (!PATHS[k]) throw new Error(`--paths ${k}: one of ${Object.keys(PATHS).join(', ')}`);
  const crypto = process.argv.includes('--crypto');
  if (process.env.KNIT_KERNEL_LANE === '1') return inLane(seconds, rounds, keys, crypto);
  const out = path.resolve(arg('out', path.join(ROOT, 'bench/results')));
  const t0 = Date.now();
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const r = spawnSync(path.join(ROOT, 'scripts/kernel-run'), ['--timeout', String(300 + (crypto ? 300 : 0) + keys.length * 40 + rounds * keys.length * (seconds + 20)), '--',
    process.execPath, '--import', 'tsx', __filename, '--seconds', String(seconds), '--rounds', String(rounds), '--paths', keys.join(','), ...(crypto ? ['--crypto'] : [])], { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const line = r.stdout.split('\n').find((l) => l.startsWith(MARK));
  if (r.status !== 0 || !line) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error(`the lane run failed (exit ${r.status})`);
  }
  process.stderr.write(r.stderr.split('\n').filter((l) => l.startsWith('kernel-run:') || l.includes('GRO not enabled')).join('\n') + '\n');
  const cmd = `npm run bench:esp -- ${process.argv.slice(2).join(' ')}`.trim();
  report(JSON.parse(line.slice(MARK.length)), out, (Date.now() - t0) / 1000, cmd);
}

main().catch((e) => { console.error(e); process.exit(1); });
