// A crash-safe lock between plugin processes (and requests inside knitd): flock(2) on a file,
// taken by the native addon. The kernel drops it when the holder's fd closes or the process
// dies, so a killed plugin never wedges the next one. The wait is bounded.
//
// The critical section is a synchronous function on purpose: the wait blocks the thread
// (polling), so inside knitd a holder that awaited something would wait for the very thread
// it blocks. Keep netlink calls and small file writes in it, never IPAM or exec.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CniError, Code } from '../cni/errors';
import { native } from '../netlink/native';

/** How long a waiter tolerates a holder; a plugin's critical sections take milliseconds. */
export const LOCK_TIMEOUT_MS = 10_000;

/**
 * Runs fn holding an exclusive lock on `file` (created with its directory when missing). The
 * holder may delete the file (removeHeldLock) when what it guards is gone: a waiter that then
 * gets the lock on the unlinked inode notices (the path no longer names it) and starts over.
 */
export function withFileLock<T>(file: string, fn: () => T, timeoutMs = LOCK_TIMEOUT_MS): T {
  const N = native();
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    let fd: number;
    try {
      fd = N.flock(file, Math.max(0, deadline - Date.now()));
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      if (errno === 2 /* ENOENT: the directory went meanwhile */ && attempt < 100) continue;
      if (errno === 110 /* ETIMEDOUT */) {
        throw new CniError(Code.TryAgainLater, `lock ${file} is held by another knit process for more than ${timeoutMs} ms; retry`);
      }
      throw new CniError(Code.IOFailure, `cannot lock ${file}: ${(e as Error).message}`);
    }
    let current = false;
    try { current = fs.fstatSync(fd).ino === fs.statSync(file).ino; } catch { current = false; }
    if (!current) {
      N.funlock(fd);
      if (attempt < 100) continue;
      throw new CniError(Code.TryAgainLater, `lock ${file} keeps being replaced; retry`);
    }
    try {
      const out = fn();
      if (out && typeof (out as { then?: unknown }).then === 'function') {
        throw new TypeError('withFileLock: the critical section must be synchronous');
      }
      return out;
    } finally {
      N.funlock(fd);
    }
  }
}

/** Deletes the lock file; only its holder may (inside withFileLock's fn). */
export function removeHeldLock(file: string): void {
  try { fs.unlinkSync(file); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
}
