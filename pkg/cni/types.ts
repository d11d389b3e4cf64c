// The CNI data model (SPEC.md 1.1.0 sections 1 and 5, CONVENTIONS.md): network config as a plugin
// receives it, and results in the 1.x form knit works with internally plus the 0.3.x/0.4.0 wire form.
// Types only: this module has no runtime code, importing it is free.

/** CNI_COMMAND values (SPEC.md section 2). */
export type Command = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';

/** The verbs that act on one attachment and so need container parameters. */
export type AttachmentCommand = 'ADD' | 'DEL' | 'CHECK';

// ---- results, 1.x form -----------------------------------------------------------------------

export interface Interface {
  name: string;
  mac?: string;
  /** 1.1.0 */
  mtu?: number;
  /** netns path for container interfaces; absent or empty for host interfaces. */
  sandbox?: string;
  /** 1.1.0 */
  socketPath?: string;
  /** 1.1.0 */
  pciID?: string;
}

export interface IPConfig {
  /** Address with prefix, e.g. "10.1.0.5/16". */
  address: string;
  gateway?: string;
  /** Index into Result.interfaces; absent in IPAM results. */
  interface?: number;
}

export interface Route {
  /** CIDR, e.g. "0.0.0.0/0". */
  dst: string;
  gw?: string;
  /** 1.1.0 fields below. */
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  /** 0 global, 253 link, 254 host. */
  scope?: number;
}

export interface DNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** A result in 1.x form: what plugins return from add() and what prevResult is converted to. */
export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

// ---- results, 0.3.0 / 0.3.1 / 0.4.0 wire form --------------------------------------------------

export interface IPConfig04 {
  version: '4' | '6';
  address: string;
  gateway?: string;
  interface?: number;
}

export interface Result04 {
  cniVersion: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: IPConfig04[];
  routes?: { dst: string; gw?: string }[];
  dns?: DNS;
}

/** VERSION output (SPEC.md "VERSION Success"). */
export interface VersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

/** The error JSON printed on stdout (SPEC.md "Error"). */
export interface ErrorResult {
  cniVersion?: string;
  code: number;
  msg: string;
  details?: string;
}

// ---- network config ----------------------------------------------------------------------------

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP?: string;
}

export interface Bandwidth {
  /** bits per second */
  ingressRate?: number;
  /** bits */
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

export interface RuntimeDNS {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

export interface IPRange {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

/** Capability arguments the runtime inserts (CONVENTIONS.md "Well-known Capabilities"). */
export interface RuntimeConfig {
  ips?: string[];
  mac?: string;
  portMappings?: PortMapping[];
  bandwidth?: Bandwidth;
  dns?: RuntimeDNS;
  ipRanges?: IPRange[][];
  /** Keyed by network name, as podman sends them (`--network-alias`), or a plain list. */
  aliases?: Record<string, string[]> | string[];
  cgroupPath?: string;
  deviceID?: string;
  infinibandGUID?: string;
  [key: string]: unknown;
}

/** The conventional `args.cni` block (CONVENTIONS.md "args in network config"). */
export interface ArgsCni {
  ips?: string[];
  mac?: string;
  labels?: { key: string; value: string }[];
  [key: string]: unknown;
}

export interface IPAMConf {
  type: string;
  [key: string]: unknown;
}

/** One still-valid attachment passed to GC. */
export interface Attachment {
  containerID: string;
  ifname: string;
}

/** A plugin's request config as received on stdin, after validation. Unknown keys are kept. */
export interface NetConf {
  cniVersion: string;
  /** Informational in a plugin's input: the runtime already picked cniVersion. */
  cniVersions?: string[];
  name: string;
  type: string;
  ipam?: IPAMConf;
  dns?: DNS;
  capabilities?: Record<string, boolean>;
  runtimeConfig?: RuntimeConfig;
  args?: { cni?: ArgsCni; [key: string]: unknown };
  /** Always in 1.x form after parsing, whatever version the runtime sent. */
  prevResult?: Result;
  disableCheck?: boolean;
  disableGC?: boolean;
  /** knit: JSON-lines log file for this network's plugins. */
  logFile?: string;
  'cni.dev/valid-attachments'?: Attachment[];
  [key: string]: unknown;
}
