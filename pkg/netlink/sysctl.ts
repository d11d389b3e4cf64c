// Sysctls of a namespace. /proc/sys/net shows the namespace of the thread that opens
// the file, so the addon opens it while switched into the target and returns.
import { fromNative } from './errors';
import { native } from './native';

/** "net/ipv4/ip_forward" as is; a dotted "net.ipv4.ip_forward" (no slash) is converted. */
function keyPath(key: string): string {
  return key.includes('/') ? key.replace(/^\/proc\/sys\//, '') : key.replace(/\./g, '/');
}

export function setSysctl(netnsPath: string | null | undefined, key: string, value: string | number): void {
  try {
    native().writeSysctl(netnsPath || null, keyPath(key), String(value));
  } catch (err) {
    fromNative(err, `sysctl ${keyPath(key)}=${value}${netnsPath ? ` in ${netnsPath}` : ''}`);
  }
}

export function getSysctl(netnsPath: string | null | undefined, key: string): string {
  try {
    return native().readSysctl(netnsPath || null, keyPath(key));
  } catch (err) {
    fromNative(err, `sysctl ${keyPath(key)}${netnsPath ? ` in ${netnsPath}` : ''}`);
  }
}
