// The names knit's resolver answers, and their syntax. Pure and free of the DNS codec, so the
// plugins (which validate aliases at ADD) and knitctl load it at no cost.
//
//   web                 a container name, alias or service on a network of the asking container
//   web.app.knit        the same, on network "app" only (the search domain the ADD result gives)
//   tasks.api           swarm's name for the containers behind service "api" (dnsrr)

import { CniError, Code } from '../cni/errors';
import type { NetConf } from '../cni/types';
import { DNS_ZONE as ZONE, networkDomain } from '../network/spec';

export { ZONE, networkDomain };
/** Seconds a client may cache an answer (docs/dns.md "TTL"). */
export const TTL_SEC = 5;

const LABEL_RE = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i;

/** A name in DNS form: labels of letters, digits, "_" and "-" (not at either end), at most 253 characters. */
export function isDnsName(name: string): boolean {
  if (!name || name.length > 253) return false;
  return name.split('.').every((l) => LABEL_RE.test(l));
}

/** Lower case, without the trailing dot: names compare case-insensitively (RFC 4343). */
export function normalizeName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

/**
 * Checks the aliases a runtime passed for one network (the CNI `aliases` capability), returning
 * them normalized and deduplicated; throws an Error naming the key and the bad value.
 */
export function checkAliases(key: string, aliases: unknown): string[] {
  if (!Array.isArray(aliases)) throw new Error(`invalid ${key} ${JSON.stringify(aliases)}: a list of names`);
  const out: string[] = [];
  aliases.forEach((a, i) => {
    if (typeof a !== 'string' || !isDnsName(a) || a.toLowerCase().endsWith(`.${ZONE}`)) {
      throw new Error(`invalid ${key}[${i}] ${JSON.stringify(a)}: a DNS name (letters, digits, "_" and "-" in dot-separated labels of at most 63 characters, 253 in all, not under .${ZONE})`);
    }
    const n = normalizeName(a);
    if (!out.includes(n)) out.push(n);
  });
  return out;
}

/**
 * The container's aliases on network `network`: the CNI `aliases` capability, which podman passes
 * as `runtimeConfig.aliases` keyed by network name (a plain list is taken as this network's).
 * Code 7 naming the key when one is not a DNS name.
 */
export function aliasesOf(conf: NetConf, network: string): string[] {
  const rc = conf.runtimeConfig?.aliases;
  if (rc === undefined || rc === null) return [];
  const [key, list] = Array.isArray(rc) ? ['runtimeConfig.aliases', rc as unknown] : [`runtimeConfig.aliases.${network}`, (rc as Record<string, unknown>)[network]];
  if (list === undefined) return [];
  try {
    return checkAliases(key, list);
  } catch (e) {
    throw new CniError(Code.InvalidConfig, (e as Error).message);
  }
}
