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
