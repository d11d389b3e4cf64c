// Runs benchmark cases interleaved (knit, reference, knit, reference, ...) so that drift in
// machine load hits both sides alike, and times each run from exec to exit.
import { spawnSync } from 'node:child_process';
import type { BenchCase, CaseResult, CommandSpec, Target } from './types';
import { ratio, summarize } from './stats';

/** The environment of timed processes: ours without NODE_EXTRA_CA_CERTS (it costs Node
 * ~60 ms of start-up) and without NODE_OPTIONS (tsx and test runners put hooks there). */
export function cleanEnv(base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) {
    if (v !== undefined && k !== 'NODE_EXTRA_CA_CERTS' && k !== 'NODE_OPTIONS') env[k] = v;
  }
  return env;
}

/** Runs `spec` once and returns its exec-to-exit wall time in milliseconds. */
export function timeCommand(spec: CommandSpec, env: Record<string, string> = cleanEnv()): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(spec.file, spec.args ?? [], {
    env: { ...env, ...spec.env },
    input: spec.stdin ?? '',
    stdio: ['pipe', 'pipe', 'pipe'],
    maxBuffer: 16 << 20,
  });
  const end = process.hrtime.bigint();
  const ok = spec.okCodes ?? [0];
  // A plugin may exit without reading stdin (the reference ones do on VERSION): EPIPE is fine.
  const code = (r.error as NodeJS.ErrnoException | undefined)?.code;
  if (r.error && code !== 'EPIPE') throw new Error(`${spec.file}: ${r.error.message}`);
  if (r.status === null || !ok.includes(r.status)) {
    const why = r.status === null ? `signal ${r.signal}` : `exit ${r.status}`;
    throw new Error(`${spec.file} ${(spec.args ?? []).join(' ')}: ${why}: ${r.stderr.toString().trim()}${r.stdout.toString().trim()}`);
  }
  return Number(end - start) / 1e6;
}

export async function timeTarget(target: Target, env: Record<string, string>): Promise<number> {
  if (typeof target !== 'function') return timeCommand(target, env);
  const start = process.hrtime.bigint();
  const own = await target();
  // A target that times its own critical section (around untimed set-up or clean-up) returns it.
  return typeof own === 'number' ? own : Number(process.hrtime.bigint() - start) / 1e6;
}

export interface RunOptions {
  runs: number;
  warmup: number;
  env?: Record<string, string>;
  onProgress?: (caseName: string, done: number, total: number) => void;
}

export async function runCase(c: BenchCase, opts: RunOptions): Promise<CaseResult> {
  const env = opts.env ?? cleanEnv();
  const knitMs: number[] = [];
  const referenceMs: number[] = [];
  for (let i = 0; i < opts.warmup + opts.runs; i++) {
    const k = await timeTarget(c.knit, env);
    const r = await timeTarget(c.reference, env);
    if (i >= opts.warmup) {
      knitMs.push(k);
      referenceMs.push(r);
    }
    opts.onProgress?.(c.name, i + 1, opts.warmup + opts.runs);
  }
  const knit = summarize(knitMs);
  const reference = summarize(referenceMs);
  return {
    name: c.name,
    knitLabel: c.knitLabel ?? 'knit',
    referenceLabel: c.referenceLabel ?? 'reference',
    knitMs,
    referenceMs,
    knit,
    reference,
    ratio: ratio(knit.median, reference.median),
  };
}
