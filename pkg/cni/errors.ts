// CNI errors: the spec's codes (SPEC.md "Error" section) and knit's own (100+).
// Every error a plugin prints is one of these, as {cniVersion, code, msg, details}.

export const Code = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IOFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  /** STATUS: the plugin cannot serve ADD now. */
  PluginNotAvailable: 50,
  /** STATUS: ADD would give limited connectivity. */
  LimitedConnectivity: 51,
  // knit's own, documented in docs/errors.md
  /** The kernel refused a netlink request; details carry errno and the extended-ack message. */
  KernelRefused: 100,
  /** A kernel feature the config needs is missing (e.g. 8021q, vxlan). */
  KernelFeatureMissing: 101,
  /** No free address in any range, or a requested address is taken or outside every range. */
  AddressUnavailable: 102,
  /** A delegated plugin failed without printing a CNI error. */
  DelegateFailed: 103,
  /** Something the plugin found on the node contradicts the config (e.g. bridge holds another gateway). */
  Conflict: 104,
} as const;

export type CodeValue = (typeof Code)[keyof typeof Code];

export class CniError extends Error {
  readonly code: number;
  readonly details: string | undefined;

  constructor(code: number, msg: string, details?: string) {
    super(msg);
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }

  toJSON(cniVersion: string): Record<string, unknown> {
    const out: Record<string, unknown> = { cniVersion, code: this.code, msg: this.message };
    if (this.details) out.details = this.details;
    return out;
  }
}

/** A config key with a bad value: names the key, shows the value and what would be valid. */
export function invalidConfig(key: string, value: unknown, valid: string): CniError {
  return new CniError(Code.InvalidConfig, `invalid ${key} ${show(value)}: ${valid}`);
}

/** An environment variable with a bad or missing value. */
export function invalidEnv(name: string, value: string | undefined, valid: string): CniError {
  return new CniError(
    Code.InvalidEnvironment,
    value === undefined || value === '' ? `${name} is required: ${valid}` : `invalid ${name} ${show(value)}: ${valid}`,
  );
}

/** Short JSON rendering of a value for messages (never more than 80 characters). */
export function show(v: unknown): string {
  let s: string;
  try { s = JSON.stringify(v) ?? String(v); } catch { s = String(v); }
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}

/** A CniError, or an error that knows its CNI code (a kernel refusal): expected, not a bug. */
export function isExpectedError(e: unknown): boolean {
  return e instanceof CniError || (e instanceof Error && typeof (e as { cniCode?: unknown }).cniCode === 'number');
}

/**
 * Wraps any thrown value as a CniError, keeping CniErrors as they are. Details carry the errno
 * name and syscall when there are any, never a stack trace (that goes to the log on stderr).
 */
export function asCniError(e: unknown, fallbackCode: number = Code.IOFailure): CniError {
  if (e instanceof CniError) return e;
  // An error that knows its CNI code (NetlinkError: a kernel refusal is code 100).
  const known = e as { cniCode?: unknown; cniDetails?: unknown; cniMessage?: unknown };
  if (e instanceof Error && typeof known.cniCode === 'number') {
    return new CniError(known.cniCode, typeof known.cniMessage === 'string' ? known.cniMessage : e.message, typeof known.cniDetails === 'string' ? known.cniDetails : undefined);
  }
  if (e instanceof Error) {
    const ne = e as NodeJS.ErrnoException;
    const details = [ne.code, ne.syscall, ne.path].filter((x) => typeof x === 'string' && x !== '').join(' ');
    return new CniError(fallbackCode, e.message || e.name, details || undefined);
  }
  return new CniError(fallbackCode, String(e));
}

