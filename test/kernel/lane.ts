// Helpers for the suites that run inside the kernel lane (scripts/kernel-run): whether this
// kernel can do what they need, and where knit's executables are. The host-side runner is
// test/integration/kernel-lane.test.ts; docs/kernel-lane.md describes the lane.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireRoot } from '../lab/lab';

const ROOT = path.resolve(__dirname, '../..');

/** True inside scripts/kernel-run's guest (it sets KNIT_KERNEL_LANE=1). */
export const IN_LANE = process.env.KNIT_KERNEL_LANE === '1';

/** Whether this kernel has 802.1Q (the lane loads 8021q before the command runs). */
export function has8021q(): boolean {
  return fs.existsSync('/proc/net/vlan/config') || fs.existsSync('/sys/module/8021q');
}

/**
 * Mocha before(): skip the suite, saying why, unless we are root on a kernel with 8021q. On a
 * host without it, the suite is meant to run through `scripts/kernel-run`.
 */
export function requireVlanKernel(ctx: Mocha.Context): void {
  requireRoot(ctx);
  if (!has8021q()) {
    console.log(`      skipped: ${ctx.test?.parent?.title ?? 'suite'} needs a kernel with 8021q; run it in the kernel lane: scripts/kernel-run -- node_modules/.bin/mocha test/kernel`);
    ctx.skip();
  }
}

/**
 * The directory holding knit's executables for these suites: KNIT_KERNEL_BIN (the host-side
 * runner passes its fresh private build), else dist/bin (`npm run build`).
 */
export function knitBinDir(): string {
  return process.env.KNIT_KERNEL_BIN || path.join(ROOT, 'dist/bin');
}

/** Mocha before(): the path of executable `name`, or skip the suite saying why it is missing. */
export function requireExecutable(ctx: Mocha.Context, name: string): string {
  const file = path.join(knitBinDir(), name);
  if (!fs.existsSync(file)) {
    console.log(`      skipped: ${ctx.test?.parent?.title ?? 'suite'}: ${file} does not exist (build it: npm run build)`);
    ctx.skip();
  }
  return file;
}

/** A compact "what happened" for assertion messages. */
export function outcome(o: { code: number; stdout: string; stderr: string }): string {
  const err = o.stderr.trim().split('\n').slice(-3).join(' | ');
  return `exit ${o.code}: ${o.stdout.trim()}${err ? ` (stderr: ${err})` : ''}`;
}
