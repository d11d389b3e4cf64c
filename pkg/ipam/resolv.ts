// resolv.conf → CNI dns (what the reference host-local's `resolvConf` does), merged with an
// explicit `ipam.dns`: explicit values win, lists from the file fill what is not given.
import { readFileSync } from 'node:fs';
import { CniError, Code } from '../cni/errors';
import type { Dns } from './config';

export function parseResolvConf(text: string): Dns {
  const dns: Dns = {};
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...rest] = line.split(/\s+/);
    if (!key || rest.length === 0) continue;
    switch (key) {
      case 'nameserver': (dns.nameservers ??= []).push(rest[0]!); break;
      case 'domain': dns.domain = rest[0]!; break;
      case 'search': dns.search = rest; break; // the last search line wins, as in resolver(5)
      case 'options': (dns.options ??= []).push(...rest); break;
    }
  }
  return dns;
}

export function readResolvConf(file: string): Dns {
  try {
    return parseResolvConf(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CniError(Code.IOFailure, `cannot read ipam.resolvConf ${file}: ${(e as Error).message}`);
  }
}

export function mergeDns(fromFile: Dns | null, explicit: Dns | null): Dns | undefined {
  const out: Dns = { ...(fromFile ?? {}), ...(explicit ?? {}) };
  return Object.keys(out).length ? out : undefined;
}
