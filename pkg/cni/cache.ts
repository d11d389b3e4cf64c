// libcni's result cache, the record of an attachment on the node: <dir>/results/<network>-<containerID>-<ifname>,
// JSON {kind: "cniCacheV1", containerId, config (the conflist's bytes, base64 as Go encodes []byte),
// ifName, networkName, netns, cniArgs, capabilityArgs, result}. Runtimes read it for DEL's
// prevResult and config (podman, libcni's DelNetworkList/GetNetworkListCachedConfig) and for GC's
// list of valid attachments (libcni >= 1.2), so an attachment written here is one they know.
import { CniError, Code, show } from './errors';
import { parseConfList, type ConfList } from './conflist';

/** libcni's default (CNI_CACHE_DIR overrides it in cnitool). */
export const DEFAULT_CACHE_DIR = '/var/lib/cni';
export const CACHE_KIND = 'cniCacheV1';

export interface CachedAttachment {
  kind: typeof CACHE_KIND;
  containerId: string;
  /** The conflist's bytes, base64. */
  config: string;
  ifName: string;
  networkName: string;
  /** The netns path at ADD (libcni >= 1.2 writes it; older ones ignore it). */
  netns?: string;
  cniArgs?: Array<[string, string]>;
  capabilityArgs?: Record<string, unknown>;
  /** The chain's result in the list's cniVersion. */
  result?: Record<string, unknown>;
}

export const cacheFile = (dir: string, network: string, containerId: string, ifName: string): string =>
  `${dir.replace(/\/+$/, '')}/results/${network}-${containerId}-${ifName}`;

/** The entry for an attachment: what libcni's cacheAdd writes (empty args and capabilities omitted, as Go's omitempty). */
export function cacheEntry(list: ConfList, a: { containerId: string; ifName: string; netns?: string; args?: Array<[string, string]>; capabilityArgs?: Record<string, unknown>; result: Record<string, unknown> }): CachedAttachment {
  const e: CachedAttachment = { kind: CACHE_KIND, containerId: a.containerId, config: list.bytes.toString('base64'), ifName: a.ifName, networkName: list.name };
  if (a.netns) e.netns = a.netns;
  if (a.args?.length) e.cniArgs = a.args;
  if (a.capabilityArgs && Object.keys(a.capabilityArgs).length) e.capabilityArgs = a.capabilityArgs;
  e.result = a.result;
  return e;
}

/** Writes an entry (directory 0700, file 0600 as libcni; through a temp file and rename, so a reader never sees half). */
export function writeCached(dir: string, e: CachedAttachment): string {
  const fs = require('node:fs') as typeof import('node:fs');
  const file = cacheFile(dir, e.networkName, e.containerId, e.ifName);
  fs.mkdirSync(`${dir.replace(/\/+$/, '')}/results`, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(e), { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}

function parseEntry(text: string, file: string): CachedAttachment {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new CniError(Code.DecodeFailure, `cached attachment ${file}: not JSON: ${(e as Error).message}`);
  }
  if (j?.kind !== CACHE_KIND) throw new CniError(Code.DecodeFailure, `cached attachment ${file}: kind ${show(j?.kind)}, expected "${CACHE_KIND}"`);
  for (const k of ['containerId', 'config', 'ifName', 'networkName']) {
    if (typeof j[k] !== 'string') throw new CniError(Code.DecodeFailure, `cached attachment ${file}: invalid ${k} ${show(j[k])}: a string`);
  }
  return j as unknown as CachedAttachment;
}

/** The entry of one attachment, or null when there is none. */
export function readCached(dir: string, network: string, containerId: string, ifName: string): CachedAttachment | null {
  const fs = require('node:fs') as typeof import('node:fs');
  const file = cacheFile(dir, network, containerId, ifName);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return parseEntry(text, file);
}

/**
 * Entries of a network (and a container, when given). File names cannot be split reliably (names
 * and IDs may hold '-'), so the candidates by prefix are read and matched on their fields.
 */
export function listCached(dir: string, network: string, containerId?: string): CachedAttachment[] {
  const fs = require('node:fs') as typeof import('node:fs');
  const base = `${dir.replace(/\/+$/, '')}/results`;
  const prefix = `${network}-${containerId !== undefined ? `${containerId}-` : ''}`;
  let names: string[];
  try {
    names = fs.readdirSync(base);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: CachedAttachment[] = [];
  for (const n of names.filter((x) => x.startsWith(prefix) && !/\.tmp\d+$/.test(x)).sort()) {
    let e: CachedAttachment;
    try {
      e = parseEntry(fs.readFileSync(`${base}/${n}`, 'utf8'), `${base}/${n}`);
    } catch {
      continue; // another runtime's legacy or broken file: not ours to judge
    }
    if (e.networkName === network && (containerId === undefined || e.containerId === containerId)) out.push(e);
  }
  return out;
}

/** Removes an entry; false when there was none. */
export function removeCached(dir: string, network: string, containerId: string, ifName: string): boolean {
  const fs = require('node:fs') as typeof import('node:fs');
  try {
    fs.unlinkSync(cacheFile(dir, network, containerId, ifName));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** The conflist an entry was made with (detach runs DEL with it, as podman does, not with today's file). */
export function cachedConfList(e: CachedAttachment): ConfList {
  return parseConfList(Buffer.from(e.config, 'base64'), `cached config of ${e.networkName}/${e.containerId}/${e.ifName}`);
}
