// CNI_ARGS ("K=V;K2=V2", SPEC.md section 2, CONVENTIONS.md "CNI_ARGS") and the static IP / MAC
// requests that may arrive three ways: runtimeConfig (capabilities), args.cni, CNI_ARGS.
import { CniError, Code, show } from './errors';
import { parseIP, type IPAddr } from '../ip/ip';
import type { NetConf } from './types';

/** Keys every knit plugin understands (what podman, containerd, CRI-O and kubelet send). */
export const KNOWN_ARGS: readonly string[] = [
  'IgnoreUnknown', 'IP', 'MAC', 'K8S_POD_NAMESPACE', 'K8S_POD_NAME', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID',
];

/** A requested address: "<ip>[/<prefix>]"; whether a prefix is required is the IPAM's choice. */
export interface StaticIP {
  /** As given, e.g. "10.1.0.5/24" or "fd00::5". */
  text: string;
  ip: IPAddr;
  prefix?: number;
  /** Where it came from, for messages: "runtimeConfig.ips[0]", "args.cni.ips[1]", "CNI_ARGS IP". */
  source: string;
}

export interface CniArgs {
  ignoreUnknown: boolean;
  /** IP=, comma-separated list allowed. */
  ips: StaticIP[];
  /** MAC=, normalised to lower-case colon form. */
  mac?: string;
  k8sPodNamespace?: string;
  k8sPodName?: string;
  k8sPodInfraContainerId?: string;
  k8sPodUid?: string;
  /** Every pair as given (known, declared-extra and, with IgnoreUnknown, unknown ones). */
  raw: Record<string, string>;
}

export interface ParseArgsOptions {
  /** Extra keys the plugin understands besides KNOWN_ARGS. */
  known?: readonly string[];
  /** DEL: never fail on CNI_ARGS (cleanup must go on); problems are reported to onWarning. */
  lenient?: boolean;
  onWarning?: (msg: string) => void;
}

const argErr = (msg: string): CniError => new CniError(Code.InvalidEnvironment, msg);

/** Parses "<ip>[/<prefix>]"; null when malformed. */
export function parseStaticIP(text: string, source: string): StaticIP | null {
  if (typeof text !== 'string') return null;
  const slash = text.indexOf('/');
  const ip = parseIP(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return null;
  if (slash < 0) return { text, ip, source };
  const len = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(len) || Number(len) > (ip.family === 4 ? 32 : 128)) return null;
  return { text, ip, prefix: Number(len), source };
}

/** Normalises a 6-byte unicast MAC ("0A-58-..." → "0a:58:..."); null when malformed or multicast/zero. */
export function normalizeMac(s: unknown): string | null {
  if (typeof s !== 'string' || !/^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(s)) return null;
  const mac = s.toLowerCase().replace(/-/g, ':');
  if (parseInt(mac.slice(0, 2), 16) & 1) return null; // multicast bit: not an interface address
  if (mac === '00:00:00:00:00:00') return null;
  return mac;
}

export const MAC_VALID = 'a unicast MAC address such as "0a:58:0a:01:00:05"';
export const IP_VALID = 'an IP address with optional prefix length, e.g. "10.1.0.5/24" or "fd00::5"';

function truthy(v: string): boolean | null {
  const l = v.toLowerCase();
  return l === '1' || l === 'true' ? true : l === '0' || l === 'false' ? false : null;
}

/** Parses CNI_ARGS. Unknown keys are an error (code 4) unless IgnoreUnknown=1|true, as in the reference. */
export function parseCniArgs(s: string | undefined, opts: ParseArgsOptions = {}): CniArgs {
  const out: CniArgs = { ignoreUnknown: false, ips: [], raw: {} };
  if (!s) return out;
  const fail = (msg: string): void => {
    if (!opts.lenient) throw argErr(msg);
    opts.onWarning?.(msg);
  };
  const unknown: string[] = [];
  for (const pair of s.split(';')) {
    if (pair === '') continue; // tolerate "A=1;" and ";;"
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      fail(`invalid CNI_ARGS pair ${show(pair)}: KEY=VALUE pairs separated by ';', e.g. "IgnoreUnknown=1;IP=10.1.0.5"`);
      continue;
    }
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    out.raw[key] = value;
    switch (key) {
      case 'IP': {
        const ips: StaticIP[] = [];
        for (const t of value.split(',')) {
          const ip = parseStaticIP(t.trim(), 'CNI_ARGS IP');
          if (!ip) { fail(`invalid CNI_ARGS IP ${show(value)}: ${IP_VALID}, several separated by ','`); ips.length = 0; break; }
          ips.push(ip);
        }
        out.ips = ips;
        break;
      }
      case 'MAC': {
        const mac = normalizeMac(value);
        if (mac) out.mac = mac; else fail(`invalid CNI_ARGS MAC ${show(value)}: ${MAC_VALID}`);
        break;
      }
      case 'K8S_POD_NAMESPACE': out.k8sPodNamespace = value; break;
      case 'K8S_POD_NAME': out.k8sPodName = value; break;
      case 'K8S_POD_INFRA_CONTAINER_ID': out.k8sPodInfraContainerId = value; break;
      case 'K8S_POD_UID': out.k8sPodUid = value; break;
      default:
        if (key.toLowerCase() === 'ignoreunknown') {
          const b = truthy(value);
          if (b === null) fail(`invalid CNI_ARGS IgnoreUnknown ${show(value)}: 1, true, 0 or false`);
          else out.ignoreUnknown = b;
        } else if (!opts.known?.includes(key)) {
          unknown.push(pair);
        }
    }
  }
  if (unknown.length && !out.ignoreUnknown) {
    const known = [...KNOWN_ARGS, ...(opts.known ?? [])].join(', ');
    fail(`CNI_ARGS has unknown keys ${show(unknown)}: known keys are ${known}; add IgnoreUnknown=1 to pass others`);
  }
  return out;
}

/**
 * The static addresses requested for this attachment, from the first source that has any:
 * runtimeConfig.ips (capability), then args.cni.ips, then CNI_ARGS IP= (CONVENTIONS.md: a plugin
 * that understands args must ignore the equivalent CNI_ARGS field). Config values were validated
 * by conf.ts already.
 */
export function staticIPs(conf: NetConf, args: CniArgs): StaticIP[] {
  const from = (list: string[] | undefined, src: string): StaticIP[] =>
    (list ?? []).map((t, i) => {
      const ip = parseStaticIP(t, `${src}[${i}]`);
      if (!ip) throw new CniError(Code.InvalidConfig, `invalid ${src}[${i}] ${show(t)}: ${IP_VALID}`);
      return ip;
    });
  const rc = from(conf.runtimeConfig?.ips, 'runtimeConfig.ips');
  if (rc.length) return rc;
  const ac = from(conf.args?.cni?.ips, 'args.cni.ips');
  if (ac.length) return ac;
  return args.ips;
}

/** The requested MAC with the same precedence: runtimeConfig.mac, args.cni.mac, CNI_ARGS MAC=. */
export function staticMac(conf: NetConf, args: CniArgs): { mac: string; source: string } | undefined {
  const cands: [unknown, string][] = [
    [conf.runtimeConfig?.mac, 'runtimeConfig.mac'],
    [conf.args?.cni?.mac, 'args.cni.mac'],
    [args.mac, 'CNI_ARGS MAC'],
  ];
  for (const [v, source] of cands) {
    if (v === undefined || v === '') continue;
    const mac = normalizeMac(v);
    if (!mac) throw new CniError(Code.InvalidConfig, `invalid ${source} ${show(v)}: ${MAC_VALID}`);
    return { mac, source };
  }
  return undefined;
}

/**
 * The container interface's MAC for a main plugin: runtimeConfig.mac, args.cni.mac, CNI_ARGS
 * MAC=, then the plugin's own `mac` key (validated here too, so a bad key is refused even when a
 * runtime value wins).
 */
export function requestedMac(conf: NetConf, args: CniArgs): string | undefined {
  let keyMac: string | undefined;
  if (conf.mac !== undefined) {
    keyMac = normalizeMac(conf.mac) ?? undefined;
    if (!keyMac) throw new CniError(Code.InvalidConfig, `invalid mac ${show(conf.mac)}: ${MAC_VALID}`);
  }
  return staticMac(conf, args)?.mac ?? keyMac;
}
