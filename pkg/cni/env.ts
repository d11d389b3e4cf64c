// CNI_* environment variables (SPEC.md section 2 "Parameters" and each verb's required set).
// Container ID and interface name are validated here, before they can reach a file or link name.
import { CniError, Code, show } from './errors';
import type { Command } from './types';

export const COMMANDS: readonly Command[] = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'];

export type Env = Record<string, string | undefined>;

export interface CniEnv {
  command: Command;
  /** '' for STATUS, GC and VERSION. */
  containerId: string;
  /** '' when not given (DEL may omit it). */
  netns: string;
  ifName: string;
  /** Raw CNI_ARGS; parsed by args.ts. */
  args: string;
  /** CNI_PATH split on ':' with empty entries dropped. */
  path: string[];
}

const VALID = {
  CNI_CONTAINERID: 'a container ID of at most 200 characters: an alphanumeric character, then alphanumerics, "_", "." or "-"',
  CNI_NETNS: "the path of the container's network namespace (e.g. /run/netns/NAME or /proc/PID/ns/net)",
  CNI_IFNAME: "an interface name of 1-15 bytes without '/', ':' or whitespace, not \".\" or \"..\"",
} as const;

/** Which of the attachment variables each verb requires (true) or accepts (false). */
const REQUIRED: Record<Command, { CNI_CONTAINERID?: boolean; CNI_NETNS?: boolean; CNI_IFNAME?: boolean }> = {
  ADD: { CNI_CONTAINERID: true, CNI_NETNS: true, CNI_IFNAME: true },
  CHECK: { CNI_CONTAINERID: true, CNI_NETNS: true, CNI_IFNAME: true },
  DEL: { CNI_CONTAINERID: true, CNI_NETNS: false, CNI_IFNAME: true },
  STATUS: {},
  GC: {},
  VERSION: {},
};

/** Reads CNI_COMMAND; throws code 4 naming the valid verbs when missing or unknown. */
export function parseCommand(value: string | undefined): Command {
  if (value === undefined || value === '') {
    throw new CniError(Code.InvalidEnvironment, `CNI_COMMAND is required: one of ${COMMANDS.join(', ')}`);
  }
  if (!(COMMANDS as readonly string[]).includes(value)) {
    throw new CniError(Code.InvalidEnvironment, `invalid CNI_COMMAND ${show(value)}: one of ${COMMANDS.join(', ')}`);
  }
  return value as Command;
}

// The one container-ID rule (the spec's): every plugin and IPAM store checks IDs with it.
const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
/**
 * Container IDs end up in file names (IPAM reservations, macvlan parent records) together with the
 * network and interface names, and a file name holds 255 bytes: a longer ID is refused here (code 4
 * naming the variable) rather than failing as ENAMETOOLONG deep in a store. Runtimes use 64.
 */
export const MAX_CONTAINER_ID = 200;

/** Returns an error message for a bad container ID, or null when it is valid. */
export function containerIdProblem(id: string): string | null {
  return CONTAINER_ID_RE.test(id) && id.length <= MAX_CONTAINER_ID ? null : VALID.CNI_CONTAINERID;
}

/** Returns why an interface name is unusable (Linux dev_valid_name rules), or null when it is valid. */
export function ifNameProblem(name: string): string | null {
  if (name === '' || name === '.' || name === '..' || Buffer.byteLength(name) > 15 || /[/:\s\0]/.test(name)) {
    return VALID.CNI_IFNAME;
  }
  return null;
}

export function validateContainerId(id: string, variable = 'CNI_CONTAINERID'): void {
  if (containerIdProblem(id)) throw new CniError(Code.InvalidEnvironment, `invalid ${variable} ${show(id)}: ${VALID.CNI_CONTAINERID}`);
}

export function validateIfName(name: string, variable = 'CNI_IFNAME'): void {
  if (ifNameProblem(name)) throw new CniError(Code.InvalidEnvironment, `invalid ${variable} ${show(name)}: ${VALID.CNI_IFNAME}`);
}

/** Parses and validates the CNI_* variables for the verb; throws code 4 on the first problem. */
export function parseEnv(env: Env): CniEnv {
  const command = parseCommand(env.CNI_COMMAND);
  const req = REQUIRED[command];
  const get = (name: 'CNI_CONTAINERID' | 'CNI_NETNS' | 'CNI_IFNAME'): string => {
    const v = env[name] ?? '';
    if (req[name] === undefined) return ''; // not an attachment verb: ignore whatever is set
    if (v === '' && req[name]) {
      throw new CniError(Code.InvalidEnvironment, `${name} is required for ${command}: ${VALID[name]}`);
    }
    return v;
  };
  const containerId = get('CNI_CONTAINERID');
  const netns = get('CNI_NETNS');
  const ifName = get('CNI_IFNAME');
  if (containerId) validateContainerId(containerId);
  if (ifName) validateIfName(ifName);
  // DEL stays permissive (best-effort cleanup); ADD/CHECK need a path knit can open.
  if (netns && command !== 'DEL' && !netns.startsWith('/')) {
    throw new CniError(Code.InvalidEnvironment, `invalid CNI_NETNS ${show(netns)}: an absolute path, ${VALID.CNI_NETNS}`);
  }
  return {
    command,
    containerId,
    netns,
    ifName,
    args: env.CNI_ARGS ?? '',
    path: splitPath(env.CNI_PATH),
  };
}

export function splitPath(p: string | undefined): string[] {
  return p ? p.split(':').filter((d) => d !== '') : [];
}
