// Addresses of named networks on the mesh (docs/mesh.md, design D21): each node claims blocks of
// a network's ranges (a /28, or a /120 for IPv6; the whole range when smaller) with a majority's
// votes (a `block` claim: the same block held by another node conflicts), then hands out
// addresses from its own blocks alone, so no address is ever given twice across nodes, with no
// vote per container. The blocks and the allocations are kept on disk (written before answering).
// The ranges are the conflist's (pkg/network/conflist.ts ipamOf, parsed by pkg/ipam/config.ts):
// ip-range bounds, the gateway and aux addresses are never handed out. No quorum for a new block:
// code 11, as etcd unreachable is.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CniError, Code } from '../cni/errors';
import { ipToBigInt, parseIP } from '../ip/ip';
import { parseIpamConfig, type IpamConfig, type Range } from '../ipam/config';
import { allocationOf, blockedAt, exhaustedMessage, ipText, placeRequests, who, type Allocation } from '../ipam/range';
import { ownerKey, type Owner } from '../ipam/store';
import { ipamOf } from '../network/conflist';
import { writeAtomic } from '../network/node-file';
import { SpecError, type Network } from '../network/spec';
import { isServiceOwner } from '../service/owners';
import { NoQuorumError, type MeshNode } from './node';
import type { NodeIpamView } from './state';

const BLOCK_BITS = { 4: 4, 6: 8 } as const;

interface Block { lo: string; hi: string; text: string }
/** last: the address handed out last, per range set (the next ADD starts after it). */
interface NetState { name: string; blocks: Block[]; allocs: Record<string, Allocation[]>; last?: Record<number, string> }

/** One attachment holding addresses on this node (`knitctl ipam gc`, the pod GC). */
export interface HeldAttachment { network: string; owner: Owner; ips: string[] }

const ownerOf = (key: string): Owner => { const i = key.lastIndexOf(':'); return { containerId: key.slice(0, i), ifName: key.slice(i + 1) }; };

/** The block (aligned, within the range's bounds) holding n. */
function blockOf(r: Range, n: bigint): { lo: bigint; hi: bigint; text: string } {
  const bits = Math.min(BLOCK_BITS[r.family], (r.family === 4 ? 32 : 128) - r.prefix);
  const size = 1n << BigInt(bits);
  const base = n - ((n - r.network) % size);
  const lo = base < r.start ? r.start : base;
  const hi = base + size - 1n > r.end ? r.end : base + size - 1n;
  return { lo, hi, text: `${ipText(base, r.family)}/${(r.family === 4 ? 32 : 128) - bits}` };
}

export class MeshIpam {
  private readonly file: string | null;
  private nets: Record<string, NetState> = {};
  /** Blocks another node holds (a refused claim), by network id: not asked again. */
  private readonly taken = new Map<string, Set<string>>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly node: MeshNode, stateDir: string | null) {
    this.file = stateDir ? path.join(stateDir, 'ipam.json') : null;
    if (this.file) try { this.nets = JSON.parse(fs.readFileSync(this.file, 'utf8')) as Record<string, NetState>; } catch { /* none yet */ }
    // A block claim is complete once the block is in ipam.json (written before any address from it): D23.
    node.addClaimCheck((c) => c.kind === 'block' && !!this.nets[c.netId]?.blocks.some((b) => b.text === c.block));
    this.publish();
  }

  /** Tells the mesh which attachments hold addresses here, per network (`network rm` waits for them). */
  private publish(): void {
    // Blocks and addresses for `knitctl ipam ls` on any node.
    const view: Record<string, NodeIpamView> = {};
    for (const st of Object.values(this.nets)) {
      const v = (view[st.name] ??= { blocks: [], ips: {} });
      v.blocks.push(...st.blocks.map((b) => b.text));
      for (const [k, a] of Object.entries(st.allocs)) v.ips[k] = a.map((x) => x.ip);
    }
    this.node.setIpamView(view);
    // Services' VIPs and load-balancer addresses do not hold a network back (`network rm` refuses services by name).
    const by = new Map<string, string[]>();
    for (const st of Object.values(this.nets)) by.set(st.name, [...(by.get(st.name) ?? []), ...Object.keys(st.allocs).filter((k) => !isServiceOwner(ownerOf(k)))].sort());
    for (const n of Object.keys(this.node.ownHeld)) if (!by.has(n)) by.set(n, []);
    for (const [n, owners] of by) this.node.setHeld(n, owners);
  }

  private save(): void {
    this.publish();
    if (!this.file) return;
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    writeAtomic(this.file, JSON.stringify(this.nets), 0o600);
  }

  /** One request at a time: an address is chosen and recorded with no other request in between. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private network(name: string): { net: Network; cfg: IpamConfig; st: NetState } {
    const net = this.node.state.nets.get(name)?.net;
    if (!net) throw new CniError(Code.TryAgainLater, `network ${name} is not on the mesh (not created, removed, or not replicated to this node yet)`);
    // Networks removed since: their blocks went with their grants.
    for (const id of Object.keys(this.nets)) if (!this.node.state.networks().some((n) => n.id === id)) delete this.nets[id];
    const cfg = parseIpamConfig({ name, ipam: ipamOf(net, { nodeName: this.node.state.self, runDir: '/' }) });
    const st = (this.nets[net.id] ??= { name, blocks: [], allocs: {} });
    return { net, cfg, st };
  }

  /**
   * ADD: one address per range set (a static request in its own set), new blocks claimed as
   * needed; a repeated ADD returns what the attachment holds. `v4Only`: IPv4 range sets only (a
   * service's VIP, a node's load-balancer address).
   */
  allocate(network: string, owner: Owner, requests: string[], v4Only = false): Promise<Allocation[]> {
    return this.serial(async () => {
      const { net, cfg: all, st } = this.network(network);
      const cfg = v4Only ? { ...all, rangeSets: all.rangeSets.filter((x) => x.ranges[0]?.family === 4) } : all;
      const key = ownerKey(owner);
      if (st.allocs[key]) return st.allocs[key]!;
      const placed = placeRequests(cfg, requests.map((r) => parseIP(r)).filter((x): x is NonNullable<typeof x> => !!x));
      const used = new Set(Object.values(st.allocs).flat().map((a) => a.ip));
      const out: Allocation[] = [];
      for (const set of cfg.rangeSets) {
        const want = placed.get(set.index);
        if (want) {
          const text = ipText(want.n, want.range.family);
          if (used.has(text)) throw new CniError(Code.AddressUnavailable, `requested address ${text} is in use on network ${network} (this node)`);
          const b = blockOf(want.range, want.n);
          const holder = await this.ensureBlock(net.id, st, b);
          if (holder) throw new CniError(Code.AddressUnavailable, `requested address ${text} is in block ${b.text} of network ${network}, held by node ${holder}: request it there, or another address`);
          out.push(allocationOf(set, want.range, want.n));
          continue;
        }
        let got: Allocation | null = null;
        while (!got) {
          got = this.freeIn(set.index, all, st, used);
          if (got) break;
          const next = this.nextBlock(net.id, all, set.index, st);
          if (!next) throw new CniError(Code.AddressUnavailable, `${exhaustedMessage(set, network)} (every block of its ranges is held by a node)`);
          await this.ensureBlock(net.id, st, next); // held elsewhere: marked taken, the next one is tried
        }
        used.add(got.ip);
        (st.last ??= {})[set.index] = got.ip;
        out.push(got);
      }
      st.allocs[key] = out;
      this.save();
      return out;
    });
  }

  /**
   * A free address of set `index` in this node's blocks, the first after the one handed out last
   * (round robin, as host-local): an address freed is not handed out again until the others were.
   * A reused address comes with a new MAC, and a pod on a node that missed the new pod's
   * gratuitous ARP (across a partition) keeps the old MAC for 5-8 s (docs/mesh.md).
   */
  private freeIn(index: number, cfg: IpamConfig, st: NetState, used: Set<string>): Allocation | null {
    const set = cfg.rangeSets[index]!;
    const all: Allocation[] = [];
    for (const b of st.blocks) {
      for (const r of set.ranges) {
        const lo = BigInt(b.lo);
        const hi = BigInt(b.hi);
        if (lo < r.start || hi > r.end) continue;
        for (let n = lo; n <= hi; n++) if (!blockedAt(r, n)) all.push(allocationOf(set, r, n));
      }
    }
    const start = all.findIndex((a) => a.ip === st.last?.[index]) + 1;
    for (let i = 0; i < all.length; i++) {
      const a = all[(start + i) % all.length]!;
      if (!used.has(a.ip)) return a;
    }
    return null;
  }

  /** The first block of set `index` neither this node's nor known to be another's. */
  private nextBlock(id: string, cfg: IpamConfig, index: number, st: NetState): { lo: bigint; hi: bigint; text: string } | null {
    const mine = new Set(st.blocks.map((b) => b.text));
    const taken = this.taken.get(id) ?? new Set();
    for (const r of cfg.rangeSets[index]!.ranges) {
      for (let n = r.start; n <= r.end;) {
        const b = blockOf(r, n);
        if (!mine.has(b.text) && !taken.has(b.text)) return b;
        n = b.hi + 1n;
      }
    }
    return null;
  }

  /** This node holds the block (claimed now by a majority's votes if it did not): null; else the node that holds it. */
  private async ensureBlock(id: string, st: NetState, b: { lo: bigint; hi: bigint; text: string }): Promise<string | null> {
    if (st.blocks.some((x) => x.text === b.text)) return null;
    let r;
    try {
      r = await this.node.vote({ kind: 'block', netId: id, block: b.text }, this.node.version(), 3000);
    } catch (e) {
      if (e instanceof NoQuorumError) throw new CniError(Code.TryAgainLater, `network ${st.name}: ${e.message}`);
      throw e;
    }
    if (!r.ok) {
      const t = this.taken.get(id) ?? new Set<string>();
      t.add(b.text);
      this.taken.set(id, t);
      return r.holder || 'another node';
    }
    st.blocks.push({ lo: b.lo.toString(), hi: b.hi.toString(), text: b.text });
    this.save();
    return null;
  }

  /** DEL: frees the attachment's addresses; nothing to free is success. */
  release(network: string, owner: Owner): Promise<string[]> {
    return this.serial(async () => {
      const key = ownerKey(owner);
      const freed: string[] = [];
      for (const st of Object.values(this.nets)) {
        if (st.name !== network || !st.allocs[key]) continue;
        freed.push(...st.allocs[key]!.map((a) => a.ip));
        delete st.allocs[key];
      }
      if (freed.length) this.save();
      return freed;
    });
  }

  /** CHECK: what the attachment holds (code 3 when nothing). */
  check(network: string, owner: Owner): Allocation[] {
    const st = Object.values(this.nets).find((s) => s.name === network && s.allocs[ownerKey(owner)]);
    if (!st) throw new CniError(Code.UnknownContainer, `${who(owner)} holds no address on network ${network} (this node)`);
    return st.allocs[ownerKey(owner)]!;
  }

  /** Whether `ip` lies in one of the network's dynamic ranges (the addresses its containers get). */
  inRanges(network: string, ip: string): boolean {
    const { cfg } = this.network(network);
    const a = parseIP(ip);
    if (!a) return false;
    const n = ipToBigInt(a);
    return cfg.rangeSets.some((set) => set.ranges.some((r) => r.family === a.family && n >= r.start && n <= r.end));
  }

  /** The attachments holding addresses here (every network, or one). */
  attachments(network?: string): HeldAttachment[] {
    return Object.values(this.nets).filter((st) => !network || st.name === network)
      .flatMap((st) => Object.entries(st.allocs).map(([k, a]) => ({ network: st.name, owner: ownerOf(k), ips: a.map((x) => x.ip) })));
  }

  /** GC (the runtime's CNI GC): frees attachments of `network` not in `valid`; never a service's VIP or load-balancer address. */
  gc(network: string, valid: Owner[]): Promise<string[]> {
    return this.serial(async () => {
      const keep = new Set(valid.map(ownerKey));
      const freed: string[] = [];
      for (const st of Object.values(this.nets)) {
        if (st.name !== network) continue;
        for (const [k, a] of Object.entries(st.allocs)) if (!keep.has(k) && !isServiceOwner(ownerOf(k))) { freed.push(...a.map((x) => x.ip)); delete st.allocs[k]; }
      }
      if (freed.length) this.save();
      return freed;
    });
  }

  /** This node's blocks and allocation count per network (status). */
  summary(): Array<{ network: string; blocks: string[]; addresses: number }> {
    return Object.values(this.nets).map((s) => ({ network: s.name, blocks: s.blocks.map((b) => b.text), addresses: Object.keys(s.allocs).length }));
  }
}

/** Each node's blocks and attachments on each network (or one), from the replica; live: heard within its lease time. */
export interface MeshIpamListing { network: string; nodes: Array<{ node: string; live: boolean; blocks: string[]; ips: Record<string, string[]> }> }

export function ipamListing(node: MeshNode, network?: string): MeshIpamListing[] {
  const now = Date.now();
  const by = new Map<string, MeshIpamListing>();
  for (const n of [...node.state.nodes.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    for (const [net, v] of Object.entries(n.ipam ?? {})) {
      if (network && net !== network) continue;
      const l = by.get(net) ?? { network: net, nodes: [] };
      l.nodes.push({ node: n.name, live: node.state.live(n.name, now), blocks: v.blocks, ips: v.ips });
      by.set(net, l);
    }
  }
  if (network && !by.has(network)) {
    if (!node.state.nets.get(network)?.net) throw new SpecError(`no network named ${network} (knitctl network ls lists them)`);
    by.set(network, { network, nodes: [] });
  }
  return [...by.values()].sort((a, b) => a.network.localeCompare(b.network));
}
