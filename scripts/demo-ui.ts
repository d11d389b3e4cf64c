// What every part of `npm run demo` shares: where the built executables are, and how a step and
// its output are printed.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const BIN = resolve(__dirname, '../dist/bin');
const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
export const step = (s: string): void => console.log(`\n${bold('== ' + s)}`);
export const indent = (s: string): string => s.trimEnd().split('\n').map((l) => '   ' + l).join('\n');

/** Waits (up to 30 s) until knitd has written the lease file into each run dir. */
export async function waitForLeases(runDirs: string[]): Promise<void> {
  for (const d of runDirs) {
    for (let t = 0; !existsSync(join(d, 'lease.json')); t++) {
      if (t > 300) throw new Error(`knitd wrote no lease into ${d}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
