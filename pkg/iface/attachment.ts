// An attachment's identity on the host: the host-side link gets a deterministic name and an
// ifalias naming (network, container, interface). DEL and GC find what an ADD made from these
// alone — no state file to lose — and a leftover from a crashed ADD is recognised as ours.
import { FNV_OFFSET, FNV_PRIME, fnv1a32 } from '../hash';

export interface AttachmentId {
  network: string;
  containerId: string;
  ifName: string;
}

const ALIAS_PREFIX = 'knit:';

/** "kn" + 12 hex digits: 14 bytes, within IFNAMSIZ, stable for the same attachment. FNV-1a with
 *  two seeds gives 48 bits (a collision is caught by the alias check). */
export function hostLinkName(id: AttachmentId, prefix = 'kn'): string {
  const key = `${id.network}\0${id.containerId}\0${id.ifName}`;
  const a = fnv1a32(key, FNV_OFFSET).toString(16).padStart(8, '0');
  const b = fnv1a32(key, FNV_PRIME).toString(16).padStart(8, '0');
  return `${prefix}${a}${b.slice(0, 4)}`;
}

/** The ifalias: "knit:<network>:<containerId>:<ifName>" (none of the three may contain ':'). */
export function attachmentAlias(id: AttachmentId): string {
  return `${ALIAS_PREFIX}${id.network}:${id.containerId}:${id.ifName}`;
}

export function parseAttachmentAlias(alias: string | undefined): AttachmentId | null {
  if (!alias?.startsWith(ALIAS_PREFIX)) return null;
  const parts = alias.slice(ALIAS_PREFIX.length).split(':');
  if (parts.length !== 3 || parts.some((p) => !p)) return null;
  return { network: parts[0]!, containerId: parts[1]!, ifName: parts[2]! };
}

export function sameAttachment(a: AttachmentId, b: AttachmentId): boolean {
  return a.network === b.network && a.containerId === b.containerId && a.ifName === b.ifName;
}
