// The service load balancer's datapath cost (docs/services.md): knitd writes its nftables table
// whole when it starts, then each change touches only the services that changed. Measured per
// S services x B backends in a lab netns: rendering the whole table (pure), writing it whole, and
// one backend of one service replaced (what a container's ADD or DEL costs every node), both as
// knitd does it (renderChanges) and as the first version did (the whole table again), median of R
// runs. No reference to compare with: IPVS is not in this kernel.
//   node --import tsx scripts/bench/services.ts [--services 1,100,1000] [--backends 10] [--runs 15] [--out bench/results]
// Everything runs inside one lab network namespace, removed at the end.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab } from '../../test/lab/lab';
import { applyTable, renderChanges, renderTable, type LbService } from '../../pkg/service/lb';
import { arg } from './script';

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };

interface Row { services: number; backends: number; renderMs: number; firstMs: number; changeMs: number; wholeChangeMs: number; bytes: number }

function state(services: number, backends: number, shift = 0): LbService[] {
  const ip = (n: number): string => `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
  return Array.from({ length: services }, (_, s) => ({
    network: 'bench', name: `svc${s}`, vip: ip(0x100000 + s), ports: [{ proto: 'tcp' as const, port: 80 }], lb: ip(0x1fffff),
    backends: Array.from({ length: backends }, (_, b) => ip(0x200000 + s * 64 + b + (s === 0 ? shift : 0))),
  }));
}

/** Runs inside the lab netns (--inner): the measurements, as JSON on stdout. */
function inner(): void {
  const runs = Number(arg('runs', '15'));
  const b = Number(arg('backends', '10'));
  const rows: Row[] = [];
  for (const s of arg('services', '1,100,1000').split(',').map(Number)) {
    const render: number[] = [];
    const first: number[] = [];
    const change: number[] = [];
    const whole: number[] = [];
    let bytes = 0;
    for (let r = 0; r < runs; r++) {
      applyTable(renderTable([]));
      let t = performance.now();
      const script = renderTable(state(s, b));
      render.push(performance.now() - t);
      bytes = script.length;
      t = performance.now();
      applyTable(script);
      first.push(performance.now() - t);
      // One backend of one service replaced: knitd's way, then the whole table again.
      t = performance.now();
      applyTable(renderChanges(state(s, b), state(s, b, 1 + r)));
      change.push(performance.now() - t);
      t = performance.now();
      applyTable(renderTable(state(s, b, 2 + r)));
      whole.push(performance.now() - t);
    }
    applyTable(renderTable([]));
    rows.push({ services: s, backends: b, renderMs: median(render), firstMs: median(first), changeMs: median(change), wholeChangeMs: median(whole), bytes });
  }
  process.stdout.write(JSON.stringify(rows));
}

async function main(): Promise<void> {
  delete process.env.NODE_EXTRA_CA_CERTS;
  if (process.argv.includes('--inner')) return inner();
  const out = arg('out', path.resolve(__dirname, '../../bench/results'));
  const lab = new Lab();
  let rows: Row[];
  try {
    const ns = await lab.netns('svcbench');
    const pass = process.argv.slice(2).filter((a, i, all) => a !== '--out' && all[i - 1] !== '--out');
    rows = JSON.parse(execFileSync('ip', ['netns', 'exec', ns.name, process.execPath, '--import', 'tsx', __filename, '--inner', ...pass], { encoding: 'utf8', maxBuffer: 1 << 26 })) as Row[];
  } finally {
    await lab.cleanup();
  }
  const md = [
    '## services: the load balancer\'s nftables table (one nft transaction per change)',
    '',
    `${new Date().toISOString()} · ${os.cpus().length} CPUs · load ${os.loadavg()[0]!.toFixed(1)} · node ${process.version} · ${execFileSync('nft', ['--version'], { encoding: 'utf8' }).trim()} · medians`,
    '',
    '| services | backends each | render whole ms | write whole ms | one backend changed: only its service ms | the same, whole table again ms | whole script KiB |',
    '|--:|--:|--:|--:|--:|--:|--:|',
    ...rows.map((r) => `| ${r.services} | ${r.backends} | ${r.renderMs.toFixed(2)} | ${r.firstMs.toFixed(1)} | ${r.changeMs.toFixed(1)} | ${r.wholeChangeMs.toFixed(1)} | ${(r.bytes / 1024).toFixed(0)} |`),
    '',
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'services.md'), md);
  console.log(md);
}

void main().catch((e) => { console.error(e); process.exit(1); });
