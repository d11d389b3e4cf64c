// Results: parse any version's result (prevResult, a delegate's stdout) into the validated 1.x form,
// and convert a 1.x result to the version the runtime asked for.
import { CniError, Code, show } from './errors';
import { parseCIDR, parseIP } from '../ip/ip';
import { isV1 } from './version';
import type { DNS, IPConfig, Interface, Result, Route } from './types';

type Obj = Record<string, unknown>;

export interface ParseResultOptions {
  /** Key path used in messages, e.g. "prevResult". */
  path?: string;
  /** Version to assume when the result carries no cniVersion (prevResult inherits the config's). */
  version?: string;
  /** Code for a malformed result: 7 for prevResult (part of the config), 6 for a delegate's output. */
  code?: number;
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

/** Parses a result of any supported version into 1.x form, checking every field's type. */
export function parseResult(raw: unknown, opts: ParseResultOptions = {}): Result {
  const path = opts.path ?? 'result';
  const code = opts.code ?? Code.InvalidConfig;
  const bad = (key: string, value: unknown, valid: string): CniError =>
    new CniError(code, `invalid ${key} ${show(value)}: ${valid}`);
  if (!isObj(raw)) throw bad(path, raw, 'a CNI result object');
  const cniVersion = raw.cniVersion ?? opts.version ?? '1.1.0';
  if (typeof cniVersion !== 'string') throw bad(`${path}.cniVersion`, cniVersion, 'a version string such as "1.1.0"');
  const src = 'ip4' in raw || 'ip6' in raw ? fromLegacy(raw) : raw;

  const str = (o: Obj, key: string, p: string, required = false): string | undefined => {
    const v = o[key];
    if (v === undefined || (v === null && !required)) {
      if (required) throw bad(`${p}.${key}`, v, 'a non-empty string (required)');
      return undefined;
    }
    if (typeof v !== 'string' || (required && v === '')) throw bad(`${p}.${key}`, v, required ? 'a non-empty string' : 'a string');
    return v;
  };
  const uint = (o: Obj, key: string, p: string): number | undefined => {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (!isUint(v)) throw bad(`${p}.${key}`, v, 'a non-negative integer');
    return v;
  };
  const arr = (key: string): unknown[] | undefined => {
    const v = src[key];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) throw bad(`${path}.${key}`, v, 'a list');
    return v;
  };

  const out: Result = { cniVersion };
  const ifs = arr('interfaces');
  if (ifs) {
    out.interfaces = ifs.map((x, i): Interface => {
      const p = `${path}.interfaces[${i}]`;
      if (!isObj(x)) throw bad(p, x, 'an object {name, mac, sandbox}');
      const it: Interface = { name: str(x, 'name', p, true)! };
      const mac = str(x, 'mac', p); if (mac !== undefined) it.mac = mac;
      const mtu = uint(x, 'mtu', p); if (mtu !== undefined) it.mtu = mtu;
      const sb = str(x, 'sandbox', p); if (sb !== undefined) it.sandbox = sb;
      const sp = str(x, 'socketPath', p); if (sp !== undefined) it.socketPath = sp;
      const pci = str(x, 'pciID', p); if (pci !== undefined) it.pciID = pci;
      return it;
    });
  }
  const ips = arr('ips');
  if (ips) {
    out.ips = ips.map((x, i): IPConfig => {
      const p = `${path}.ips[${i}]`;
      if (!isObj(x)) throw bad(p, x, 'an object {address, gateway}');
      const address = str(x, 'address', p, true)!;
      const net = parseCIDR(address);
      if (!net) throw bad(`${p}.address`, address, 'an address with prefix length, e.g. "10.1.0.5/16"');
      // ips[].version is the 0.x form; it is dropped, but when present it must agree with the address.
      if (x.version !== undefined && x.version !== String(net.ip.family)) {
        throw bad(`${p}.version`, x.version, `"${net.ip.family}" for address ${address}`);
      }
      const ip: IPConfig = { address };
      const gw = str(x, 'gateway', p);
      if (gw !== undefined && gw !== '') {
        if (!parseIP(gw)) throw bad(`${p}.gateway`, gw, 'an IP address');
        ip.gateway = gw;
      }
      const idx = uint(x, 'interface', p); if (idx !== undefined) ip.interface = idx;
      return ip;
    });
  }
  const routes = arr('routes');
  if (routes) {
    out.routes = routes.map((x, i): Route => {
      const p = `${path}.routes[${i}]`;
      if (!isObj(x)) throw bad(p, x, 'an object {dst, gw}');
      const dst = str(x, 'dst', p, true)!;
      if (!parseCIDR(dst)) throw bad(`${p}.dst`, dst, 'a destination in CIDR form, e.g. "0.0.0.0/0"');
      const r: Route = { dst };
      const gw = str(x, 'gw', p);
      if (gw !== undefined && gw !== '') {
        if (!parseIP(gw)) throw bad(`${p}.gw`, gw, 'an IP address');
        r.gw = gw;
      }
      for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
        const v = uint(x, k, p); if (v !== undefined) r[k] = v;
      }
      return r;
    });
  }
  if (src.dns !== undefined && src.dns !== null) {
    const dns = parseDNS(src.dns, `${path}.dns`, bad);
    if (dns) out.dns = dns;
  }
  return out;
}

/** Validates a result/config `dns` block; returns undefined when it is empty. */
export function parseDNS(v: unknown, p: string, bad: (k: string, v: unknown, valid: string) => CniError): DNS | undefined {
  if (!isObj(v)) throw bad(p, v, 'an object {nameservers, domain, search, options}');
  const out: DNS = {};
  const list = (key: 'nameservers' | 'search' | 'options'): void => {
    const l = v[key];
    if (l === undefined || l === null) return;
    if (!Array.isArray(l)) throw bad(`${p}.${key}`, l, 'a list of strings');
    l.forEach((s, i) => {
      if (typeof s !== 'string') throw bad(`${p}.${key}[${i}]`, s, 'a string');
      if (key === 'nameservers' && !parseIP(s)) throw bad(`${p}.${key}[${i}]`, s, 'an IPv4 or IPv6 address');
    });
    if (l.length) out[key] = [...l] as string[];
  };
  list('nameservers');
  if (v.domain !== undefined && v.domain !== null) {
    if (typeof v.domain !== 'string') throw bad(`${p}.domain`, v.domain, 'a string');
    if (v.domain) out.domain = v.domain;
  }
  list('search');
  list('options');
  return Object.keys(out).length ? out : undefined;
}

/** 0.1.0/0.2.0 results ({ip4: {ip, gateway, routes}, ip6, dns}) into the 0.3+ shape. */
function fromLegacy(raw: Obj): Obj {
  const ips: Obj[] = [];
  const routes: unknown[] = [];
  for (const k of ['ip4', 'ip6']) {
    const b = raw[k];
    if (!isObj(b)) continue;
    ips.push({ address: b.ip, gateway: b.gateway });
    if (Array.isArray(b.routes)) routes.push(...b.routes);
  }
  return { ips, routes, dns: raw.dns };
}

/**
 * Converts a 1.x result to the wire form of `version`: 1.x keeps every field (as the reference's
 * 1.0/1.1 type does), 0.3.x/0.4.0 gain ips[].version and lose the 1.1-only fields.
 * The output keeps the spec's key order: cniVersion, interfaces, ips, routes, dns.
 */
export function convertResult(r: Result, version: string): Obj {
  const out: Obj = { cniVersion: version };
  const v1 = isV1(version);
  if (r.interfaces?.length) {
    out.interfaces = r.interfaces.map((i) => {
      const o: Obj = { name: i.name };
      if (i.mac !== undefined) o.mac = i.mac;
      if (v1 && i.mtu !== undefined) o.mtu = i.mtu;
      if (i.sandbox !== undefined) o.sandbox = i.sandbox;
      if (v1 && i.socketPath !== undefined) o.socketPath = i.socketPath;
      if (v1 && i.pciID !== undefined) o.pciID = i.pciID;
      return o;
    });
  }
  if (r.ips?.length) {
    out.ips = r.ips.map((ip) => {
      const o: Obj = {};
      if (!v1) o.version = ip.address.includes(':') ? '6' : '4';
      o.address = ip.address;
      if (ip.gateway !== undefined) o.gateway = ip.gateway;
      if (ip.interface !== undefined) o.interface = ip.interface;
      return o;
    });
  }
  if (r.routes?.length) {
    out.routes = r.routes.map((rt) => {
      const o: Obj = { dst: rt.dst };
      if (rt.gw !== undefined) o.gw = rt.gw;
      if (v1) for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) if (rt[k] !== undefined) o[k] = rt[k];
      return o;
    });
  }
  if (r.dns) {
    const d: Obj = {};
    for (const k of ['nameservers', 'domain', 'search', 'options'] as const) {
      const val = r.dns[k];
      if (val !== undefined && (typeof val === 'string' ? val !== '' : val.length)) d[k] = val;
    }
    if (Object.keys(d).length) out.dns = d;
  }
  return out;
}
