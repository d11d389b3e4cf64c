// Spec versions knit speaks, the VERSION answer, and which verbs each version allows.
import { CniError, Code, show } from './errors';
import type { Command, VersionInfo } from './types';

/** Oldest first. 0.1.0/0.2.0 (the ip4/ip6 result form, no chaining) are not spoken. */
export const SUPPORTED_VERSIONS: readonly string[] = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
export const LATEST_VERSION = '1.1.0';

export function isSupportedVersion(v: unknown): v is string {
  return typeof v === 'string' && SUPPORTED_VERSIONS.includes(v);
}

/** Parses "X.Y.Z" into numbers; null when it is not a plain semantic version. */
export function parseVersion(v: string): [number, number, number] | null {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

/** Negative, zero or positive as a < b, a == b, a > b. Throws code 6 on a malformed version. */
export function compareVersions(a: string, b: string): number {
  const pa = parseVersion(a), pb = parseVersion(b);
  if (!pa || !pb) {
    throw new CniError(Code.DecodeFailure, `invalid version ${show(pa ? b : a)}: a semantic version like "1.1.0"`);
  }
  return pa[0] - pb[0] || pa[1] - pb[1] || pa[2] - pb[2];
}

/** True for the 1.x result form (no ips[].version). */
export function isV1(v: string): boolean {
  return v.startsWith('1.');
}

/** Throws code 1 unless v is a version knit speaks. */
export function checkVersion(v: string, what = 'cniVersion'): void {
  if (!isSupportedVersion(v)) {
    throw new CniError(
      Code.IncompatibleVersion,
      `incompatible CNI versions: ${what} ${show(v)} is not supported; supported versions are ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
}

/** The oldest spec version that defines each verb (CHECK 0.4.0; STATUS and GC 1.1.0). */
export const VERB_MIN_VERSION: Record<Command, string> = {
  ADD: '0.3.0', DEL: '0.3.0', VERSION: '0.3.0', CHECK: '0.4.0', STATUS: '1.1.0', GC: '1.1.0',
};

/** Throws code 1 when the config's version predates the verb (as the reference skel does). */
export function checkVerbVersion(command: Command, v: string): void {
  const min = VERB_MIN_VERSION[command];
  if (compareVersions(v, min) < 0) {
    throw new CniError(
      Code.IncompatibleVersion,
      `config version does not allow ${command}: cniVersion ${show(v)} predates ${command}, which needs cniVersion ${min} or later`,
    );
  }
}

/**
 * The VERSION answer. The spec echoes the input's cniVersion; an unsupported or missing one is
 * answered with the latest (echoing "0.1.0" would make libcni treat knit as a legacy plugin).
 */
export function versionInfo(requested?: unknown): VersionInfo {
  return {
    cniVersion: isSupportedVersion(requested) ? requested : LATEST_VERSION,
    supportedVersions: [...SUPPORTED_VERSIONS],
  };
}
