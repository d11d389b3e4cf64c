// NetlinkError: what the kernel (or the addon) refused, with errno, its name and the
// kernel's extended-ack text, so a CNI error can carry all three.
import { getSystemErrorMap, getSystemErrorName } from 'node:util';
import { native } from './native';

// libuv spells 95 "ENOTSUP"; in netlink land it is EOPNOTSUPP (same number on Linux).
const NAME_OVERRIDES: Record<number, string> = { 95: 'EOPNOTSUPP' };

export function errnoName(errno: number): string {
  if (NAME_OVERRIDES[errno]) return NAME_OVERRIDES[errno]!;
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `E${errno}`;
  }
}

/** The C library's wording ("File exists"); libuv's map as a fallback when the addon is absent. */
export function strerror(errno: number): string {
  try {
    return native().strerror(errno);
  } catch {
    return getSystemErrorMap().get(-errno)?.[1] ?? `error ${errno}`;
  }
}

export class NetlinkError extends Error {
  override readonly name = 'NetlinkError';
  /** Positive errno, e.g. 17. */
  readonly errno: number;
  /** Its symbolic name, e.g. 'EEXIST'. */
  readonly code: string;
  /** The kernel's extended-ack message, when it gave one. */
  readonly extack?: string;
  /** What was attempted, e.g. "RTM_NEWLINK veth kt1-a". */
  readonly op: string;

  constructor(op: string, errno: number, extack?: string) {
    const code = errnoName(errno);
    super(`${op}: ${strerror(errno)} (${code})${extack ? `: ${extack}` : ''}`);
    this.op = op;
    this.errno = errno;
    this.code = code;
    if (extack) this.extack = extack;
  }

  /**
   * How a plugin reports it (pkg/cni/errors.ts asCniError reads these two fields, so the
   * mapping lives here, once, without pkg/cni knowing netlink): a kernel refusal is knit's
   * code 100 with errno and extack in details.
   */
  get cniCode(): number { return 100; }
  get cniMessage(): string { return `the kernel refused ${this.message}`; }
  get cniDetails(): string { return `errno ${this.code}${this.extack ? `; extack: ${this.extack}` : ''}`; }
}

/** Turns an addon exception (Error with .errno/.op) into a NetlinkError; rethrows anything else. */
export function fromNative(err: unknown, op?: string): never {
  const e = err as { errno?: unknown; op?: unknown };
  if (e && typeof e.errno === 'number') {
    throw new NetlinkError(op ?? (typeof e.op === 'string' ? e.op : 'netlink'), e.errno);
  }
  throw err;
}

export function isNetlinkError(err: unknown, code?: string): err is NetlinkError {
  return err instanceof NetlinkError && (code === undefined || err.code === code);
}

/**
 * The path given as a network namespace is none (any more): it does not exist, or exists but
 * is not a network namespace (an unmounted /run/netns file, a directory, a FIFO, a device, a
 * namespace of another kind). The addon reports these as op "open netns <path>" or "netns <path>".
 */
export function isNotNetns(err: unknown): boolean {
  if (!(err instanceof NetlinkError) || !/^(open netns|netns) /.test(err.op)) return false;
  return ['ENOENT', 'ENOTDIR', 'EINVAL', 'ESRCH', 'ENXIO', 'ENAMETOOLONG', 'ELOOP'].includes(err.code);
}

/** EEXIST: the object is already there (racing "file exists" at boot is usually benign). */
export const isExist = (err: unknown): boolean => isNetlinkError(err, 'EEXIST');

/** The object is not there: ENODEV (link), ESRCH (route), EADDRNOTAVAIL (address), ENOENT (neigh/fdb/netns). */
export function isNotFound(err: unknown): boolean {
  return err instanceof NetlinkError && ['ENODEV', 'ESRCH', 'EADDRNOTAVAIL', 'ENOENT'].includes(err.code);
}
