// Running nft for knit's per-network tables (masquerade, isolation): one `nft -f -` transaction
// per change (atomic: all of it or nothing), and `nft -j list table` to read a table back.
import { fnv1a32 } from '../hash';
import { execFileSync } from 'node:child_process';
import { CniError, Code } from '../cni/errors';

export interface NftJson { nftables: Array<Record<string, any>> }

/** Runs nft with args (and a script on stdin); failures are CNI errors naming the command and nft's message. */
export function nft(args: string[], input: string | undefined, needs: string): string {
  try {
    return execFileSync('nft', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') {
      throw new CniError(Code.IOFailure, `${needs} needs the nft command (Debian package nftables), which is not on PATH`);
    }
    const msg = (err.stderr ?? err.message).trim().split('\n').slice(0, 3).join(' | ');
    throw new CniError(Code.IOFailure, `nft ${args.join(' ')} failed: ${msg}`);
  }
}

/**
 * Several tables' transactions (masqScript, isolationScript) in one `nft -f`: one process and one
 * kernel transaction instead of one each, all applied or none.
 */
export function applyNft(scripts: string[], needs: string): void {
  if (scripts.length) nft(['-f', '-'], scripts.join(''), needs);
}

/** `nft -j list table inet <table>`, or null when there is no such table (or no nft at all). */
export function listTable(table: string): NftJson | null {
  try {
    return JSON.parse(execFileSync('nft', ['-j', 'list', 'table', 'inet', table], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as NftJson;
  } catch {
    return null; // no such table (or no nft): nothing installed
  }
}

/** An nft identifier for the network: readable part plus a hash, since names may hold '-'. */
export function chainName(network: string): string {
  return `n_${network.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 40)}_${fnv1a32(network).toString(16).padStart(8, '0')}`;
}

/** nft keeps at most 127 bytes of a comment (NFT_USERDATA_MAXLEN 128 with its NUL). */
export const NFT_COMMENT_MAX = 127;

/**
 * A quoted nft comment naming `text`; a longer text (a 200-character network name) is cut and ends
 * with its hash, so the comment still tells networks apart instead of failing the transaction.
 */
export function nftComment(text: string): string {
  const safe = text.replace(/["\\\n]/g, '_');
  if (Buffer.byteLength(safe) <= NFT_COMMENT_MAX) return `"${safe}"`;
  const tail = `~${fnv1a32(text).toString(16).padStart(8, '0')}`;
  let head = safe.slice(0, NFT_COMMENT_MAX - tail.length);
  while (Buffer.byteLength(head) > NFT_COMMENT_MAX - tail.length) head = head.slice(0, -1);
  return `"${head}${tail}"`;
}
