// knitd for the benchmark suites that measure knit "through knitd": started inside a lab netns,
// awaited until it listens, and stopped in the suite's teardown. An agent that dies during the
// run says why on stderr instead of leaving only connection resets behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Netns } from '../../test/lab/lab';
import { cleanEnv } from './runner';

export interface BenchKnitd {
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Starts dist/bin/knitd (under `root`) inside `ns` with `args`; resolves once it serves. */
export async function startKnitd(root: string, ns: Netns, args: string[] = []): Promise<BenchKnitd> {
  const proc = spawn('ip', ['netns', 'exec', ns.name, join(root, 'dist/bin/knitd'), ...args], { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  let stopping = false;
  proc.stderr!.on('data', (d: Buffer) => { log += d; });
  proc.on('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`\nbench: knitd exited (${signal ?? code}) during the run; its log ends:\n${log.slice(-3000)}\n`);
  });
  for (let i = 0; i < 200 && !log.includes('serving ') && proc.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
  if (!log.includes('serving ')) throw new Error(`knitd did not start: ${log}`);
  return {
    proc,
    async stop() {
      stopping = true;
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}
