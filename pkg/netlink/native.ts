// Loads the knit_netlink addon on first use. The search order covers every way knit
// runs: an explicit override, the esbuild bundle (dist/bin/* with the addon copied to
// dist/lib), the source tree under tsx (build/Release), and a release single
// executable with the addon beside it. process.dlopen keeps esbuild from trying to
// bundle the binary.
import * as path from 'node:path';
import { existsSync } from 'node:fs';

/** The addon's surface; see pkg/netlink/native/knit_netlink.c. */
export interface NativeAddon {
  openSocket(netnsPath: string | null, protocol: number, groups: number): number;
  /** AF_PACKET, every frame of `ifname` (null: of every link) in the namespace (tests' captures). */
  openPacketSocket(netnsPath: string | null, ifname: string | null): number;
  send(fd: number, buf: Buffer, length?: number): number;
  /** Returns -1 when nonblocking and nothing is queued. */
  recv(fd: number, buf: Buffer, nonblocking?: boolean): number;
  close(fd: number): void;
  strerror(errno: number): string;
  watch(fd: number, onReadable: (status: number) => void): object;
  unwatch(handle: object): void;
  setWatchRef(handle: object, ref: boolean): void;
  writeSysctl(netnsPath: string | null, key: string, value: string): void;
  readSysctl(netnsPath: string | null, key: string): string;
  /** Opens (creating) path and takes an exclusive flock(2); ETIMEDOUT after timeoutMs (< 0: wait forever). */
  flock(path: string, timeoutMs?: number): number;
  /** Releases a flock and closes its fd. */
  funlock(fd: number): void;
}

let addon: NativeAddon | undefined;

function isSingleExecutable(): boolean {
  try {
    return (require('node:sea') as { isSea(): boolean }).isSea();
  } catch {
    return false; // Node without node:sea
  }
}

export function addonCandidates(): string[] {
  const list: string[] = [];
  if (process.env.KNIT_NATIVE) list.push(process.env.KNIT_NATIVE);
  const besideExe = path.join(path.dirname(process.execPath), 'knit_netlink.node');
  // A release single executable ships the addon beside itself; look there first, so an
  // unrelated ../lib next to the install directory is never picked up.
  if (isSingleExecutable()) list.push(besideExe);
  list.push(
    path.join(__dirname, '../lib/knit_netlink.node'),
    path.join(__dirname, '../../build/Release/knit_netlink.node'),
  );
  if (!isSingleExecutable()) list.push(besideExe);
  return list;
}

export function native(): NativeAddon {
  if (addon) return addon;
  const tried = addonCandidates();
  for (const file of tried) {
    if (!existsSync(file)) continue;
    const mod = { exports: {} as NativeAddon };
    process.dlopen(mod, file);
    addon = mod.exports;
    return addon;
  }
  throw new Error(`knit: native netlink addon not found (run npm install); tried ${tried.join(', ')}`);
}
