// 32-bit FNV-1a over the UTF-16 code units of a string: stable short names (host links, nft
// chains) and spreading concurrent allocators over different addresses. Not for security.

export const FNV_OFFSET = 0x811c9dc5;
export const FNV_PRIME = 0x01000193;

/** FNV-1a of s from `seed` (the standard offset basis by default), as an unsigned 32-bit number. */
export function fnv1a32(s: string, seed: number = FNV_OFFSET): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME) >>> 0;
  return h;
}
