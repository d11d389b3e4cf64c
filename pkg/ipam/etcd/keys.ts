// knit-etcd-ipam's key schema and value codecs.
//
// Keys (P = etcd.prefix, N = network name, F = 4 or 6, HEX = the address as fixed-width hex so
// that the addresses of a block are one contiguous key range):
//   P/ipam/N/ips/F/HEX                 {"ip","node","containerID","ifname"}  the reservation
//   P/ipam/N/blocks/F/HEX              {"cidr","node"}                       block claimed by node
//   P/ipam/N/nodes/NODE/F/HEX          {"cidr"}                              the node's block index
//   P/ipam/N/attach/NODE/CID:IFNAME    {"ips":[{ip, block, blockNode}],     the attachment index
//                                       "pod":{namespace, name, uid?}}       (pod: from CNI_ARGS K8S_POD_*)
import { CniError, Code } from '../../cni/errors';
import { EtcdError, type EtcdClient, type KeyValue } from '../../etcd/client';
import type { Family } from '../../ip/ip';
import type { PodRef } from '../backend';
import type { Owner } from '../store';

export type { PodRef } from '../backend';

/** What the etcd allocator and its administration use of the etcd client (a MemoryEtcd in unit tests). */
export type KvClient = Pick<EtcdClient, 'txn' | 'get' | 'prefix' | 'close'>;

export interface AttachIp {
  ip: string;
  /** The block (CIDR) the address lies in and who owned it when allocated; null for static requests. */
  block: string | null;
  blockNode: string | null;
}

export interface AttachRecord {
  ips: AttachIp[];
  /** Recorded when the runtime names the pod: the pod GC (pod-gc.ts) judges the attachment by it. */
  pod?: PodRef;
}

function hexOf(n: bigint, family: Family): string {
  return n.toString(16).padStart(family === 4 ? 8 : 32, '0');
}

/** The key layout of one network. */
export class EtcdKeys {
  readonly base: string;
  constructor(prefix: string, readonly network: string) {
    this.base = `${prefix}/ipam/${network}/`;
  }
  ip(family: Family, n: bigint): string { return `${this.base}ips/${family}/${hexOf(n, family)}`; }
  /** [first, end) of the address keys lo..hi. */
  ipRange(family: Family, lo: bigint, hi: bigint): [string, Buffer] {
    return [this.ip(family, lo), Buffer.concat([Buffer.from(this.ip(family, hi)), Buffer.from([0])])];
  }
  ips(): string { return `${this.base}ips/`; }
  block(family: Family, lo: bigint): string { return `${this.base}blocks/${family}/${hexOf(lo, family)}`; }
  blocks(): string { return `${this.base}blocks/`; }
  blockRange(family: Family, lo: bigint, hi: bigint): [string, Buffer] {
    return [this.block(family, lo), Buffer.concat([Buffer.from(this.block(family, hi)), Buffer.from([0])])];
  }
  nodeBlock(node: string, family: Family, lo: bigint): string { return `${this.base}nodes/${node}/${family}/${hexOf(lo, family)}`; }
  nodeBlocks(node: string): string { return `${this.base}nodes/${node}/`; }
  attach(node: string, o: Owner): string { return `${this.base}attach/${node}/${o.containerId}:${o.ifName}`; }
  attachments(node?: string): string { return node ? `${this.base}attach/${node}/` : `${this.base}attach/`; }
}

/** The address (as a number) an ips/ or blocks/ key names. */
export function nOfKey(key: Buffer): bigint {
  const s = key.toString();
  return BigInt('0x' + s.slice(s.lastIndexOf('/') + 1));
}

// Values are written deterministically: release compares them byte for byte.
export function ipValue(ip: string, node: string, o: Owner): string {
  return JSON.stringify({ ip, node, containerID: o.containerId, ifname: o.ifName });
}
export function blockValue(cidr: string, node: string): string {
  return JSON.stringify({ cidr, node });
}
export function nodeBlockValue(cidr: string): string {
  return JSON.stringify({ cidr });
}

export function parseJson(v: Buffer): any {
  try { return JSON.parse(v.toString()); } catch { return null; }
}

export function parseAttach(kv: KeyValue): AttachRecord {
  const v = parseJson(kv.value);
  const ips = Array.isArray(v?.ips) ? (v.ips as unknown[]).filter((x): x is AttachIp => typeof (x as AttachIp)?.ip === 'string') : [];
  const pod = v?.pod;
  return {
    ips: ips.map((x) => ({ ip: x.ip, block: typeof x.block === 'string' ? x.block : null, blockNode: typeof x.blockNode === 'string' ? x.blockNode : null })),
    ...(typeof pod?.namespace === 'string' && typeof pod?.name === 'string'
      ? { pod: { namespace: pod.namespace, name: pod.name, ...(typeof pod.uid === 'string' ? { uid: pod.uid } : {}) } }
      : {}),
  };
}

/** etcd failures as CNI errors: unreachable is code 11 (try again later). */
export function etcdCniError(e: unknown): unknown {
  if (!(e instanceof EtcdError)) return e;
  switch (e.kind) {
    case 'unavailable': return new CniError(Code.TryAgainLater, e.message);
    case 'auth': return new CniError(Code.InvalidConfig, `${e.message} (ipam.etcd.username / password)`);
    case 'config': return new CniError(Code.InvalidConfig, `invalid ipam.etcd.${e.message}`);
    default: return new CniError(Code.IOFailure, e.message);
  }
}
