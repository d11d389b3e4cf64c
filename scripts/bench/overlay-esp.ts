// Encrypted vs plain VXLAN throughput (issue 16), in the kernel lane (the host kernel has no
// ESP): two pairs of lab hosts in one lane boot, one with the vxlan backend plain, one with
// `encrypted: true` (ESP rfc4106(gcm(aes)) 128), iperf3 TCP pod to pod, rounds interleaved; the
// guest's CPU busy time from /proc/stat during each run gives the CPU cost per Gbit/s.
// Goal: encrypted ≥ 80 % of plain VXLAN in the same boot.
//   node --import tsx scripts/bench/overlay-esp.ts [--seconds 5] [--rounds 3] [--out DIR]
// On the host it runs itself in the lane (scripts/kernel-run) and writes DIR/overlay-esp.{json,md}.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab } from '../../test/lab/lab';
import { get as backendFactory } from '../../pkg/agent/backend';
import { iperf, leaseOf, pairTopology, startBackend, type Pair } from '../../test/kernel/encryption-lab';

const ROOT = path.resolve(__dirname, '../..');
const arg = (name: string, dflt: string): string => { const i = process.argv.indexOf(`--${name}`); return i >= 0 ? process.argv[i + 1]! : dflt; };
const MARK = '##overlay-esp ';

interface Run { gbps: number; busy: number; retransmits: number }

function cpuTicks(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

async function inLane(seconds: number, rounds: number): Promise<void> {
  const lab = new Lab();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-bench-esp-'));
  try {
    const pairs: Record<string, Pair> = {
      'plain VXLAN': await pairTopology(lab, 71, tmp),
      'encrypted VXLAN (ESP AES-GCM-128)': await pairTopology(lab, 72, tmp),
    };
    const cfgs: Record<string, Record<string, unknown>> = {
      'plain VXLAN': { type: 'vxlan', vni: 71 },
      'encrypted VXLAN (ESP AES-GCM-128)': { type: 'vxlan', vni: 72, encrypted: true },
    };
    const mtus: Record<string, number> = {};
    for (const [k, p] of Object.entries(pairs)) {
      const cfg = backendFactory('vxlan').parseConfig(cfgs[k]!);
      for (const s of p.sides) mtus[k] = await startBackend(lab, s, cfg, { generation: 1 });
      const [a, b] = p.sides;
      for (let i = 0; i < 2; i++) { a.backend!.sync([leaseOf(b)]); b.backend!.sync([leaseOf(a)]); }
    }
    const res: Record<string, Run[]> = Object.fromEntries(Object.keys(pairs).map((k) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      for (const [k, p] of Object.entries(pairs)) {
        const [a, b] = p.sides;
        const t0 = cpuTicks();
        const x = await iperf(lab, b.pod, a.pod, b.podIp, seconds);
        const t1 = cpuTicks();
        if (!x.ok) throw new Error(`${k}: iperf3: ${x.error}`);
        res[k]!.push({ gbps: x.gbps, busy: (t1.busy - t0.busy) / (t1.total - t0.total), retransmits: x.retransmits });
      }
    }
    for (const p of Object.values(pairs)) for (const s of p.sides) s.backend?.close();
    console.log(MARK + JSON.stringify({ seconds, rounds, mtus, cpus: os.cpus().length, kernel: os.release(), res }));
  } finally {
    await lab.cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const med = (v: number[]): number => { const s = [...v].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };

function report(j: { seconds: number; rounds: number; mtus: Record<string, number>; cpus: number; kernel: string; res: Record<string, Run[]> }, out: string, laneSeconds: number): void {
  const [plainK, encK] = Object.keys(j.res) as [string, string];
  const g = (k: string): number => med(j.res[k]!.map((r) => r.gbps));
  // Cores busy per Gbit/s: the guest's busy share of its CPUs times their number, over the rate.
  const cost = (k: string): number => med(j.res[k]!.map((r) => (r.busy * j.cpus) / r.gbps));
  const ratio = g(encK) / g(plainK);
  const perRound = j.res[plainK]!.map((p, i) => j.res[encK]![i]!.gbps / p.gbps);
  const md = [
    '# Encrypted overlay throughput (iperf3 TCP, kernel lane)', '',
    `${new Date().toISOString()} · host ${os.hostname()} (${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(2)}) · guest: user-mode-linux ${j.kernel}, ${j.cpus} CPU · ${j.rounds} interleaved rounds of ${j.seconds} s; medians · lane total ${laneSeconds.toFixed(0)} s`, '',
    'Pod to pod across two lab hosts in one lane boot, the vxlan backend driven with a static peer list. UML has no AES-NI: its AES is `aes-generic` (C),',
    'and every packet is handled by one emulated CPU, so the ratio, not the absolute rate, is the figure to read.', '',
    '| path | pod MTU | Mbit/s | of plain | guest CPU busy | CPU-cores per Gbit/s | retransmits |', '|---|---:|---:|---:|---:|---:|---:|',
    ...Object.keys(j.res).map((k) => `| ${k} | ${j.mtus[k]} | ${(g(k) * 1000).toFixed(0)} | ${((g(k) / g(plainK)) * 100).toFixed(0)} % | ${(med(j.res[k]!.map((r) => r.busy)) * 100).toFixed(0)} % | ${cost(k).toFixed(1)} | ${med(j.res[k]!.map((r) => r.retransmits))} |`),
    '', `Encrypted / plain: ${(ratio * 100).toFixed(1)} % (goal ≥ 80 %: ${ratio >= 0.8 ? 'met' : 'NOT met'}); per round ${perRound.map((x) => `${(x * 100).toFixed(0)} %`).join(', ')}.`,
    `Encryption costs ${(cost(encK) / cost(plainK)).toFixed(1)}× the CPU per Gbit/s of plain VXLAN here.`, '',
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'overlay-esp.json'), JSON.stringify({ date: new Date().toISOString(), load: os.loadavg(), ...j, encryptedOverPlain: ratio }, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'overlay-esp.md'), md);
  console.log(md);
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '5'));
  const rounds = Number(arg('rounds', '3'));
  if (process.env.KNIT_KERNEL_LANE === '1') return inLane(seconds, rounds);
  const out = path.resolve(arg('out', path.join(ROOT, 'bench/results')));
  const t0 = Date.now();
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const r = spawnSync(path.join(ROOT, 'scripts/kernel-run'), ['--timeout', String(120 + rounds * 2 * (seconds + 15)), '--',
    process.execPath, '--import', 'tsx', __filename, '--seconds', String(seconds), '--rounds', String(rounds)], { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const line = r.stdout.split('\n').find((l) => l.startsWith(MARK));
  if (r.status !== 0 || !line) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error(`the lane run failed (exit ${r.status})`);
  }
  process.stderr.write(r.stderr.split('\n').filter((l) => l.startsWith('kernel-run:')).join('\n') + '\n');
  report(JSON.parse(line.slice(MARK.length)), out, (Date.now() - t0) / 1000);
}

main().catch((e) => { console.error(e); process.exit(1); });
