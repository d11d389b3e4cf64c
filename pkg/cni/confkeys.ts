// Checks for plugin-specific config keys shared by the plugins' config parsers: small pure
// functions, each throwing code 7 (invalidConfig) that names the key, the bad value and what is
// valid. Hand-written on purpose: no schema library on the start-up path (docs/design.md D4).
import { ifNameProblem } from './env';
import { invalidConfig } from './errors';

/** A boolean key: absent or null gives dflt; anything but true or false is code 7. */
export function bool(key: string, value: unknown, dflt = false): boolean {
  if (value === undefined || value === null) return dflt;
  if (typeof value !== 'boolean') throw invalidConfig(key, value, 'true or false');
  return value;
}

export const MTU_MIN = 68;
export const MTU_MAX = 65535;

/**
 * An MTU key: undefined when absent, null or 0 (the caller's default applies), else an integer
 * from 68 to 65535; `valid` is the message's "what is valid" part (it says what 0 means).
 */
export function mtu(key: string, value: unknown, valid = 'an integer from 68 to 65535 (0 or absent: the kernel default)'): number | undefined {
  if (value === undefined || value === null || value === 0) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MTU_MIN || value > MTU_MAX) throw invalidConfig(key, value, valid);
  return value;
}

/** An interface-name key (the CNI_IFNAME rules: 1-15 bytes, no '/', ':' or whitespace). */
export function ifName(key: string, value: unknown, valid: string): string {
  if (typeof value !== 'string' || ifNameProblem(value)) throw invalidConfig(key, value, valid);
  return value;
}
