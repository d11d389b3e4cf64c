// Shapes shared by the benchmark runner, the report writers and the suites.

/** A process to time: exec-to-exit wall time of `file args...` with `stdin` written to it. */
export interface CommandSpec {
  file: string;
  args?: string[];
  /** Added to the runner's clean environment (which never has NODE_EXTRA_CA_CERTS). */
  env?: Record<string, string>;
  stdin?: string;
  /** Exit codes that count as success; default [0]. */
  okCodes?: number[];
}

/**
 * Something to time: a process, or an in-process async action, timed around its await unless
 * it resolves to a number: the milliseconds of the part it timed itself.
 */
export type Target = CommandSpec | (() => Promise<void | number>);

/** One comparison: a knit operation beside the reference plugin's equivalent. */
export interface BenchCase {
  name: string;
  knit: Target;
  reference: Target;
  /** Labels for the two sides in tables and charts (default "knit" / "reference"). */
  knitLabel?: string;
  referenceLabel?: string;
}

export interface SuiteOptions {
  /** Repository root. */
  root: string;
  runs: number;
}

/** A file under scripts/bench/suites/<name>.ts exports `suite: Suite`. */
export interface Suite {
  name: string;
  description: string;
  /** Builds the cases; may create lab namespaces etc. Reasons for skipped cases go in notes. */
  setup(opts: SuiteOptions): Promise<{ cases: BenchCase[]; notes: string[] }>;
  /** Undo whatever setup created; runs even when a case failed. */
  teardown?(): Promise<void>;
}

export interface Summary {
  n: number;
  median: number;
  p10: number;
  p90: number;
  mean: number;
  min: number;
  max: number;
}

export interface CaseResult {
  name: string;
  knitLabel: string;
  referenceLabel: string;
  /** Milliseconds, in run order. */
  knitMs: number[];
  referenceMs: number[];
  knit: Summary;
  reference: Summary;
  /** knit median / reference median. */
  ratio: number;
}

export interface SuiteResult {
  suite: string;
  description: string;
  date: string;
  /** load: 1-minute load average before and after the suite (other work skews timings). */
  host: { hostname: string; cpus: number; kernel: string; node: string; load: [number, number] };
  runs: number;
  warmup: number;
  notes: string[];
  cases: CaseResult[];
}
