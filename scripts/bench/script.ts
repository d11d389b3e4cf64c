// What every benchmark script shares: its --flags, waiting, and the quantiles it reports.

/** The value after `--name` on the command line, else `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` every `pollMs` until it holds, or throws after `ms` naming `what`. */
export async function until(fn: () => boolean, ms: number, what: string, pollMs = 2): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) { if (Date.now() > end) throw new Error(`timed out: ${what}`); await sleep(pollMs); }
}

/** The p-quantile (0..1) of `xs` by nearest rank: always a value that was measured; NaN when there is none. */
export function q(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]! : NaN;
}
