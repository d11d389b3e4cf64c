// The knit-etcd-ipam keys beyond knit-host-local's (whose range keys parseIpamConfig reads):
// nodeName, blockSize/blockSize6 and the etcd connection. Validated with messages naming the key.
import { invalidConfig } from '../cni/errors';
import type { EtcdClientOptions } from '../etcd';
import { IpamConfig, IpamNetConf, parseIpamConfig } from './config';

export const DEFAULT_PREFIX = '/knit';
export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_BLOCK_SIZE = 26;
export const DEFAULT_BLOCK_SIZE6 = 122;

export interface EtcdConnConfig extends EtcdClientOptions {
  timeoutMs: number;
  /** Key prefix without a trailing slash, e.g. /knit. */
  prefix: string;
}

export interface EtcdIpamConfig extends IpamConfig {
  nodeName: string;
  /** Prefix length of the blocks nodes claim: IPv4 ranges use blockSize, IPv6 ranges blockSize6. */
  blockSize: number;
  blockSize6: number;
  etcd: EtcdConnConfig;
}

// A node name becomes one key segment: nothing with '/' or blanks.
export const NODE_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,252}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The `etcd` object (also used by knitctl for its flags). */
export function parseEtcdConn(v: unknown, path = 'ipam.etcd'): EtcdConnConfig {
  if (!isObject(v)) throw invalidConfig(path, v, 'an object {endpoints, prefix?, timeoutMs?, tls?, username?, password?}');
  const eps = v.endpoints;
  if (!Array.isArray(eps) || eps.length === 0) throw invalidConfig(`${path}.endpoints`, eps, 'a non-empty array of URLs such as ["http://10.0.0.1:2379"]');
  const endpoints = eps.map((e, i) => {
    let u: URL | null = null;
    try { u = typeof e === 'string' ? new URL(e) : null; } catch { u = null; }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname || u.username || u.password) {
      throw invalidConfig(`${path}.endpoints[${i}]`, e, 'an http:// or https:// URL with host and port, e.g. "https://10.0.0.1:2379" (credentials go in username/password)');
    }
    return e as string;
  });
  let prefix = DEFAULT_PREFIX;
  if (v.prefix !== undefined) {
    if (typeof v.prefix !== 'string' || !/^\/[^\s]*$/.test(v.prefix) || v.prefix.length > 200) throw invalidConfig(`${path}.prefix`, v.prefix, 'a key prefix starting with "/", e.g. "/knit"');
    prefix = v.prefix.replace(/\/+$/, '');
  }
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  if (v.timeoutMs !== undefined) {
    if (typeof v.timeoutMs !== 'number' || !Number.isInteger(v.timeoutMs) || v.timeoutMs < 100 || v.timeoutMs > 600_000) {
      throw invalidConfig(`${path}.timeoutMs`, v.timeoutMs, 'milliseconds, an integer from 100 to 600000 (default 5000)');
    }
    timeoutMs = v.timeoutMs;
  }
  const out: EtcdConnConfig = { endpoints, prefix, timeoutMs };
  if (v.tls !== undefined) {
    if (!isObject(v.tls)) throw invalidConfig(`${path}.tls`, v.tls, 'an object {ca?, cert?, key?} of PEM file paths');
    const tls: Record<string, string> = {};
    for (const k of ['ca', 'cert', 'key'] as const) {
      const f = v.tls[k];
      if (f === undefined) continue;
      // The value is a path, never the secret itself, so showing it is fine.
      if (typeof f !== 'string' || !f.startsWith('/')) throw invalidConfig(`${path}.tls.${k}`, f, 'an absolute path to a PEM file');
      tls[k] = f;
    }
    if ((tls.cert === undefined) !== (tls.key === undefined)) throw invalidConfig(`${path}.tls`, Object.keys(tls), 'cert and key together (a client certificate needs its key)');
    out.tls = tls;
  }
  if (v.username !== undefined) {
    if (typeof v.username !== 'string' || v.username === '') throw invalidConfig(`${path}.username`, v.username, 'a non-empty etcd user name');
    out.username = v.username;
  }
  if (v.password !== undefined) {
    // Never echo a password, not even a malformed one.
    if (typeof v.password !== 'string') throw invalidConfig(`${path}.password`, '[redacted]', 'a string');
    out.password = v.password;
  }
  if (out.password !== undefined && out.username === undefined) throw invalidConfig(`${path}.username`, undefined, 'required with password');
  return out;
}

function blockSizeOf(v: unknown, key: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidConfig(`ipam.${key}`, v, `a prefix length from ${min} to ${max} (default ${dflt}: blocks of ${2 ** (max + 2 - dflt)} addresses)`);
  }
  return v;
}

export function parseEtcdIpamConfig(conf: IpamNetConf, hostname: () => string = () => require('node:os').hostname()): EtcdIpamConfig {
  const base = parseIpamConfig(conf);
  const ipam = base.raw;
  let nodeName: string;
  if (ipam.nodeName !== undefined) {
    if (typeof ipam.nodeName !== 'string' || !NODE_RE.test(ipam.nodeName)) throw invalidConfig('ipam.nodeName', ipam.nodeName, 'a node name: letters, digits, _ . - starting with a letter or digit (default: the host name)');
    nodeName = ipam.nodeName;
  } else {
    nodeName = hostname();
    if (!NODE_RE.test(nodeName)) throw invalidConfig('ipam.nodeName', undefined, `required: the host name ${JSON.stringify(nodeName)} is not usable as a node name`);
  }
  // At least 4 addresses per block, at most 65536 (a block is scanned whole when it is filled).
  const blockSize = blockSizeOf(ipam.blockSize, 'blockSize', 16, 30, DEFAULT_BLOCK_SIZE);
  const blockSize6 = blockSizeOf(ipam.blockSize6, 'blockSize6', 112, 126, DEFAULT_BLOCK_SIZE6);
  if (ipam.etcd === undefined) throw invalidConfig('ipam.etcd', undefined, 'required: {"endpoints": ["http://HOST:2379"], ...}');
  return { ...base, nodeName, blockSize, blockSize6, etcd: parseEtcdConn(ipam.etcd) };
}
