// Network config from stdin (SPEC.md section 1 and 3, CONVENTIONS.md capabilities and args):
// decode, check the version, and validate every protocol-level key by hand (no schema compiler:
// start-up time matters). Plugin-specific keys are left to the plugin and passed through.
import { CniError, Code, invalidConfig, show } from './errors';
import { parseCIDR, parseIP } from '../ip/ip';
import { checkVerbVersion, checkVersion, SUPPORTED_VERSIONS } from './version';
import { parseDNS, parseResult } from './result';
import { IP_VALID, MAC_VALID, normalizeMac, parseStaticIP } from './args';
import type { Attachment, Command, NetConf } from './types';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const kind = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`);

// A network name becomes a directory name (IPAM data), a key segment and part of an ifalias: at most
// 200 characters, as container IDs (pkg/cni/env.ts), so neither fails as ENAMETOOLONG later.
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,199}$/;

/**
 * Decodes JSON, turning a syntax error into code 6 with line, column and offset of the problem.
 * `what` names the document in the message ("network config on stdin").
 */
export function decodeJson(data: Buffer | string, what = 'network config on stdin'): unknown {
  let text = typeof data === 'string' ? data : data.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') throw new CniError(Code.DecodeFailure, `failed to decode ${what}: it is empty; a JSON object is expected`);
  try {
    return JSON.parse(text);
  } catch (e) {
    // The offset scan recurses per nesting level: skipped for text nested deeper than any config.
    const off = jsonDepth(text) > MAX_NESTING ? -1 : jsonErrorOffset(text);
    const pre = text.slice(0, Math.max(off, 0));
    const line = pre.split('\n').length;
    const col = off - pre.lastIndexOf('\n');
    const where = off >= 0 ? ` at line ${line} column ${col} (offset ${off})` : '';
    const near = off >= 0 ? `near ${show(text.slice(Math.max(0, off - 20), off + 20))}` : undefined;
    throw new CniError(Code.DecodeFailure, `failed to decode ${what}${where}: ${(e as Error).message}`, near);
  }
}

/** Offset of the first JSON syntax error (only run after JSON.parse failed); -1 if none found. */
export function jsonErrorOffset(s: string): number {
  let i = 0;
  const fail = (): never => { throw i; };
  const ws = (): void => { while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++; };
  const str = (): void => {
    i++;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c === 0x22) { i++; return; }
      if (c < 0x20) fail();
      if (c === 0x5c) {
        i++;
        if (s[i] === 'u') { if (!/^[0-9a-fA-F]{4}$/.test(s.slice(i + 1, i + 5))) fail(); i += 4; }
        else if (!'"\\/bfnrt'.includes(s[i] ?? 'x')) fail();
      }
      i++;
    }
    fail();
  };
  const NUM = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
  const value = (): void => {
    ws();
    const c = s[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++; ws();
      if (s[i] === close) { i++; return; }
      for (;;) {
        ws();
        if (c === '{') { if (s[i] !== '"') fail(); str(); ws(); if (s[i] !== ':') fail(); i++; }
        value(); ws();
        if (s[i] === ',') { i++; continue; }
        if (s[i] === close) { i++; return; }
        fail();
      }
    }
    if (c === '"') return str();
    NUM.lastIndex = i;
    if (NUM.test(s)) { i = NUM.lastIndex; return; }
    for (const lit of ['true', 'false', 'null']) if (s.startsWith(lit, i)) { i += lit.length; return; }
    fail();
  };
  try {
    value(); ws();
    if (i < s.length) fail();
    return -1;
  } catch (p) {
    return typeof p === 'number' ? p : -1;
  }
}

/**
 * How deep a network config may nest. JSON.parse copes with any depth, but a config nested
 * deeper than the call stack (~10^4 levels) breaks everything that walks it later
 * (JSON.stringify for a delegate, the log): refused at decode, code 6, like Go's decoder
 * (which stops at 10000).
 */
export const MAX_NESTING = 1000;

/** Nesting depth of JSON text (brackets outside strings), stopping once past `limit`. */
export function jsonDepth(text: string, limit = MAX_NESTING): number {
  let depth = 0, max = 0, inStr = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inStr) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inStr = false;
    } else if (c === 0x22) inStr = true;
    else if (c === 0x7b || c === 0x5b) { if (++depth > max) { max = depth; if (max > limit) return max; } }
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/** Decodes stdin into an object (code 6 for non-JSON, a non-object document, or one nested too deep). */
export function decodeConfObject(stdin: Buffer | string): Obj {
  const raw = decodeJson(stdin);
  if (isObj(raw)) {
    const text = typeof stdin === 'string' ? stdin : stdin.toString('utf8');
    if (jsonDepth(text) > MAX_NESTING) {
      throw new CniError(Code.DecodeFailure, `failed to decode network config on stdin: nested more than ${MAX_NESTING} levels deep; a network config is a shallow JSON object`);
    }
  }
  if (!isObj(raw)) {
    throw new CniError(Code.DecodeFailure, `failed to decode network config on stdin: got ${kind(raw)}, a JSON object is expected`);
  }
  return raw;
}

/** Checks cniVersion is present and spoken, and that it allows the verb (code 1). */
export function confVersion(raw: Obj, command?: Command): string {
  const v = raw.cniVersion;
  if (v === undefined || v === '') {
    throw new CniError(
      Code.IncompatibleVersion,
      `cniVersion is missing (which means 0.1.0, not supported): set one of ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  if (typeof v !== 'string') throw invalidConfig('cniVersion', v, `a version string, one of ${SUPPORTED_VERSIONS.join(', ')}`);
  checkVersion(v);
  if (command) checkVerbVersion(command, v);
  return v;
}

/** stdin → validated NetConf (prevResult converted to 1.x). Throws CniError 6, 1 or 7. */
export function parseConf(stdin: Buffer | string, command?: Command): NetConf {
  const raw = decodeConfObject(stdin);
  const cniVersion = confVersion(raw, command);
  return validateConf(raw, cniVersion);
}

function str(o: Obj, key: string, path: string, opts: { required?: boolean; re?: RegExp; valid?: string } = {}): string | undefined {
  const v = o[key];
  const valid = opts.valid ?? (opts.required ? 'a non-empty string' : 'a string');
  if (v === undefined) {
    if (opts.required) throw new CniError(Code.InvalidConfig, `${path} is required: ${valid}`);
    return undefined;
  }
  if (typeof v !== 'string' || (opts.required && v === '') || (opts.re && !opts.re.test(v))) throw invalidConfig(path, v, valid);
  return v;
}

function strList(v: unknown, path: string, check?: (s: string) => boolean, valid = 'a string'): string[] {
  if (!Array.isArray(v)) throw invalidConfig(path, v, `a list of ${valid.replace(/^an? /, '')}s`);
  v.forEach((s, i) => {
    if (typeof s !== 'string' || (check && !check(s))) throw invalidConfig(`${path}[${i}]`, s, valid);
  });
  return v as string[];
}

function int(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidConfig(path, v, `an integer from ${min} to ${max}`);
  }
  return v;
}

const TYPE_VALID = "a plugin executable name: non-empty, without '/' or '\\'";
const typeOk = (s: string): boolean => s !== '' && s !== '.' && s !== '..' && !/[/\\\0]/.test(s);

/** Validates the protocol-level keys of a decoded config whose version was already checked. */
export function validateConf(raw: Obj, cniVersion: string): NetConf {
  if (raw.cniVersions !== undefined) strList(raw.cniVersions, 'cniVersions', undefined, 'a version string');
  str(raw, 'name', 'name', {
    required: true, re: NAME_RE,
    valid: 'a network name of at most 200 characters: an alphanumeric character, then alphanumerics, "_", "." or "-"',
  });
  const type = str(raw, 'type', 'type', { required: true, valid: TYPE_VALID });
  if (!typeOk(type!)) throw invalidConfig('type', type, TYPE_VALID);

  if (raw.ipam !== undefined) {
    if (!isObj(raw.ipam)) throw invalidConfig('ipam', raw.ipam, 'an object with at least "type"');
    // An empty "ipam": {} means no IPAM (the reference bridge treats it so); anything else needs a type.
    if (Object.keys(raw.ipam).length) {
      const t = str(raw.ipam, 'type', 'ipam.type', { required: true, valid: TYPE_VALID });
      if (!typeOk(t!)) throw invalidConfig('ipam.type', t, TYPE_VALID);
    }
  }
  const bad7 = (k: string, v: unknown, valid: string): CniError => invalidConfig(k, v, valid);
  if (raw.dns !== undefined && raw.dns !== null) parseDNS(raw.dns, 'dns', bad7);
  if (raw.capabilities !== undefined) {
    if (!isObj(raw.capabilities)) throw invalidConfig('capabilities', raw.capabilities, 'an object of capability names to true/false');
    for (const [k, v] of Object.entries(raw.capabilities)) {
      if (typeof v !== 'boolean') throw invalidConfig(`capabilities.${k}`, v, 'true or false');
    }
  }
  for (const k of ['disableCheck', 'disableGC']) {
    if (raw[k] !== undefined && typeof raw[k] !== 'boolean') throw invalidConfig(k, raw[k], 'true or false');
  }
  str(raw, 'logFile', 'logFile', { valid: 'a file path' });
  if (raw.runtimeConfig !== undefined && raw.runtimeConfig !== null) validateRuntimeConfig(raw.runtimeConfig);
  if (raw.args !== undefined && raw.args !== null) validateArgs(raw.args);

  const conf = { ...raw } as NetConf;
  if (raw.prevResult !== undefined && raw.prevResult !== null) {
    conf.prevResult = parseResult(raw.prevResult, { path: 'prevResult', version: cniVersion, code: Code.InvalidConfig });
  } else {
    delete conf.prevResult;
  }
  const va = raw['cni.dev/valid-attachments'];
  if (va !== undefined && va !== null) conf['cni.dev/valid-attachments'] = validAttachments(va);
  return conf;
}

const ipOk = (s: string): boolean => parseStaticIP(s, '') !== null;

function validateRuntimeConfig(rc: unknown): void {
  const p = 'runtimeConfig';
  if (!isObj(rc)) throw invalidConfig(p, rc, 'an object of capability arguments');
  if (rc.ips !== undefined) strList(rc.ips, `${p}.ips`, ipOk, IP_VALID);
  if (rc.mac !== undefined && (typeof rc.mac !== 'string' || !normalizeMac(rc.mac))) throw invalidConfig(`${p}.mac`, rc.mac, MAC_VALID);
  if (rc.portMappings !== undefined) {
    if (!Array.isArray(rc.portMappings)) throw invalidConfig(`${p}.portMappings`, rc.portMappings, 'a list of {hostPort, containerPort, protocol, hostIP}');
    rc.portMappings.forEach((m, i) => {
      const q = `${p}.portMappings[${i}]`;
      if (!isObj(m)) throw invalidConfig(q, m, 'an object {hostPort, containerPort, protocol, hostIP}');
      int(m.hostPort, `${q}.hostPort`, 1, 65535);
      int(m.containerPort, `${q}.containerPort`, 1, 65535);
      if (m.protocol !== undefined && (typeof m.protocol !== 'string' || !/^(tcp|udp|sctp)$/i.test(m.protocol))) {
        throw invalidConfig(`${q}.protocol`, m.protocol, '"tcp", "udp" or "sctp"');
      }
      if (m.hostIP !== undefined && (typeof m.hostIP !== 'string' || (m.hostIP !== '' && !parseIP(m.hostIP)))) {
        throw invalidConfig(`${q}.hostIP`, m.hostIP, 'an IP address, or "" for all');
      }
    });
  }
  if (rc.bandwidth !== undefined) {
    const b = rc.bandwidth;
    if (!isObj(b)) throw invalidConfig(`${p}.bandwidth`, b, 'an object {ingressRate, ingressBurst, egressRate, egressBurst}');
    for (const k of ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst']) {
      if (b[k] !== undefined) int(b[k], `${p}.bandwidth.${k}`, 0, Number.MAX_SAFE_INTEGER);
    }
  }
  if (rc.dns !== undefined) {
    const d = rc.dns;
    if (!isObj(d)) throw invalidConfig(`${p}.dns`, d, 'an object {servers, searches, options}');
    if (d.servers !== undefined) strList(d.servers, `${p}.dns.servers`, (s) => parseIP(s) !== null, 'an IP address');
    if (d.searches !== undefined) strList(d.searches, `${p}.dns.searches`);
    if (d.options !== undefined) strList(d.options, `${p}.dns.options`);
  }
  if (rc.ipRanges !== undefined) {
    if (!Array.isArray(rc.ipRanges)) throw invalidConfig(`${p}.ipRanges`, rc.ipRanges, 'a list of lists of {subnet, rangeStart, rangeEnd, gateway}');
    rc.ipRanges.forEach((set, i) => {
      if (!Array.isArray(set)) throw invalidConfig(`${p}.ipRanges[${i}]`, set, 'a list of {subnet, rangeStart, rangeEnd, gateway}');
      set.forEach((r, j) => {
        const q = `${p}.ipRanges[${i}][${j}]`;
        if (!isObj(r)) throw invalidConfig(q, r, 'an object {subnet, rangeStart, rangeEnd, gateway}');
        str(r, 'subnet', `${q}.subnet`, { required: true, valid: 'a subnet in CIDR form, e.g. "10.1.2.0/24"' });
        if (!parseCIDR(r.subnet as string)) throw invalidConfig(`${q}.subnet`, r.subnet, 'a subnet in CIDR form, e.g. "10.1.2.0/24"');
        for (const k of ['rangeStart', 'rangeEnd', 'gateway']) {
          if (r[k] !== undefined && (typeof r[k] !== 'string' || !parseIP(r[k] as string))) throw invalidConfig(`${q}.${k}`, r[k], 'an IP address');
        }
      });
    });
  }
  // CONVENTIONS.md's aliases: podman sends them keyed by network name ({"net": ["web"]}); a plain list is accepted too.
  if (rc.aliases !== undefined) {
    if (isObj(rc.aliases)) for (const [net, list] of Object.entries(rc.aliases)) strList(list, `${p}.aliases.${net}`);
    else strList(rc.aliases, `${p}.aliases`);
  }
  for (const k of ['cgroupPath', 'deviceID', 'infinibandGUID']) str(rc, k, `${p}.${k}`);
}

function validateArgs(a: unknown): void {
  if (!isObj(a)) throw invalidConfig('args', a, 'an object, conventionally {"cni": {...}}');
  const c = a.cni;
  if (c === undefined || c === null) return;
  if (!isObj(c)) throw invalidConfig('args.cni', c, 'an object {ips, mac, labels}');
  if (c.ips !== undefined) strList(c.ips, 'args.cni.ips', ipOk, IP_VALID);
  if (c.mac !== undefined && (typeof c.mac !== 'string' || !normalizeMac(c.mac))) throw invalidConfig('args.cni.mac', c.mac, MAC_VALID);
  if (c.labels !== undefined) {
    if (!Array.isArray(c.labels)) throw invalidConfig('args.cni.labels', c.labels, 'a list of {key, value}');
    c.labels.forEach((l, i) => {
      if (!isObj(l) || typeof l.key !== 'string' || typeof l.value !== 'string') {
        throw invalidConfig(`args.cni.labels[${i}]`, l, 'an object {"key": string, "value": string}');
      }
    });
  }
}

/** GC's `cni.dev/valid-attachments`: [{containerID, ifname}] (only types are checked: GC must go on). */
export function validAttachments(v: unknown): Attachment[] {
  const p = 'cni.dev/valid-attachments';
  if (!Array.isArray(v)) throw invalidConfig(p, v, 'a list of {containerID, ifname}');
  return v.map((a, i): Attachment => {
    if (!isObj(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      throw invalidConfig(`${p}[${i}]`, a, 'an object {"containerID": string, "ifname": string}');
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

/**
 * The cniVersion a VERSION request asks about, reading no more than needed: undefined when stdin
 * is empty or has no string cniVersion. Non-JSON is code 6 like any other verb; a NUL byte
 * anywhere is code 6 with a message that does not depend on where it is.
 */
export function versionRequest(stdin: Buffer | string): string | undefined {
  // A NUL is never JSON text: said without a position, so the launcher (whose shell cannot
  // keep NULs, cmd/launcher.sh) gives this very answer without Node.
  if (typeof stdin === 'string' ? stdin.includes('\0') : stdin.includes(0)) {
    throw new CniError(Code.DecodeFailure, 'failed to decode VERSION request on stdin: it holds a NUL byte, which JSON text never does');
  }
  const text = typeof stdin === 'string' ? stdin : stdin.toString('utf8');
  if (text.trim() === '') return undefined;
  const raw = decodeJson(text, 'VERSION request on stdin');
  return isObj(raw) && typeof raw.cniVersion === 'string' ? raw.cniVersion : undefined;
}
