// knitd's pod GC of knit-etcd-ipam (with --datastore kubernetes), and of knit-mesh-ipam on the
// mesh (below: judged by the attachments' host links, no pod list). Every --ipam-gc-interval it
// finds the networks whose IPAM is knit-etcd-ipam in the CNI config directory, then runs one pass
// of pkg/ipam/pod-gc.ts per network for this node: this node's attachments against the pods the
// API server lists on this node. A stale attachment is released at the first pass that comes at
// least --ipam-gc-grace after the pass that first saw it stale (docs/knit-etcd-ipam.md).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../cni/log';
import { EtcdClient } from '../etcd';
import { EtcdKeys } from '../ipam/etcd-allocator';
import { parseEtcdIpamConfig, type EtcdIpamConfig } from '../ipam/etcd-config';
import { podGcPass, StaleTracker } from '../ipam/pod-gc';
import type { PodInfo } from '../kube/pods';
import { parseAttachmentAlias, type AttachmentId } from '../iface/attachment';
import { ownerKey, type Owner } from '../ipam/store';
import { linkList, withNetlink } from '../netlink';
import { isServiceOwner } from '../service/owners';

export interface EtcdIpamNetwork {
  /** The config file it came from. */
  file: string;
  cfg: EtcdIpamConfig;
}

/** The plugin configs of a .conf/.json (one) or .conflist (its plugins, with its name and version). */
function pluginConfs(raw: Record<string, unknown>): Array<Record<string, unknown>> {
  if (!Array.isArray(raw.plugins)) return [raw];
  return raw.plugins
    .filter((p): p is Record<string, unknown> => !!p && typeof p === 'object')
    .map((p) => ({ ...p, name: raw.name, cniVersion: raw.cniVersion }));
}

/**
 * The networks using knit-etcd-ipam in a CNI config directory (*.conf, *.conflist, *.json, in
 * the order libcni reads them), one per etcd prefix and network name. Files that do not parse
 * are reported to `warn` and skipped: one bad file must not stop the GC of the others.
 */
export function etcdIpamNetworks(dir: string, warn: (msg: string) => void = () => {}): EtcdIpamNetwork[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((f) => /\.(conf|conflist|json)$/.test(f)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out = new Map<string, EtcdIpamNetwork>();
  for (const name of names) {
    const file = path.join(dir, name);
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      warn(`${file}: ${(e as Error).message}; skipped`);
      continue;
    }
    if (!raw || typeof raw !== 'object') continue;
    for (const conf of pluginConfs(raw as Record<string, unknown>)) {
      const ipam = conf.ipam as { type?: unknown } | undefined;
      if (ipam?.type !== 'knit-etcd-ipam') continue;
      try {
        const cfg = parseEtcdIpamConfig(conf as never);
        const key = `${cfg.etcd.prefix}\0${cfg.network}`;
        if (!out.has(key)) out.set(key, { file, cfg });
      } catch (e) {
        warn(`${file}: ${(e as Error).message}; skipped`);
      }
    }
  }
  return [...out.values()];
}

export interface IpamGcOptions {
  /** The CNI config directory (/etc/cni/net.d). */
  confDir: string;
  /** This node's Kubernetes name (the pods listed are the ones on it). */
  nodeName: string;
  intervalSec: number;
  graceSec: number;
  listPods: (nodeName: string) => Promise<PodInfo[]>;
  log: Logger;
}

export interface IpamGcStats {
  passes: number;
  released: number;
  errors: number;
  /** Stale attachments waiting for their confirming pass. */
  pending: number;
}

/** A pass after one interval (the node's pods are running by then), then one interval after each pass ends. */
class Passes {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly run: () => Promise<unknown>, private readonly intervalSec: () => number) {}

  start(): void {
    const next = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.run().finally(next), this.intervalSec() * 1000);
      this.timer.unref();
    };
    next();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

export class IpamGc {
  readonly stats: IpamGcStats = { passes: 0, released: 0, errors: 0, pending: 0 };
  /** One tracker per network: what each pass saw stale. */
  private readonly trackers = new Map<string, StaleTracker>();
  private readonly loop = new Passes(() => this.runOnce(), () => this.o.intervalSec);

  constructor(private readonly o: IpamGcOptions) {}

  start(): void { this.loop.start(); }

  stop(): void { this.loop.stop(); }

  /** One pass over every knit-etcd-ipam network of the config directory. */
  async runOnce(now = Date.now()): Promise<void> {
    const { log } = this.o;
    const nets = etcdIpamNetworks(this.o.confDir, (m) => log.warn(`ipam gc: ${m}`));
    let pending = 0;
    for (const { cfg } of nets) {
      const id = `${cfg.etcd.prefix}\0${cfg.network}`;
      let tracker = this.trackers.get(id);
      if (!tracker) this.trackers.set(id, tracker = new StaleTracker(this.o.graceSec * 1000));
      const client = new EtcdClient(cfg.etcd);
      try {
        const pass = await podGcPass(client, new EtcdKeys(cfg.etcd.prefix, cfg.network), () => this.o.listPods(this.o.nodeName), tracker,
          { node: cfg.nodeName, podsOfNode: this.o.nodeName, now });
        for (const r of pass.report?.released ?? []) {
          log.info(`ipam gc: network ${cfg.network}: released ${r.ip} of ${r.owner.containerId} (${r.owner.ifName}): ${r.reason}`);
        }
        this.stats.released += pass.report?.released.length ?? 0;
        const confirmed = new Set(pass.confirmed);
        const waiting = log.enabled('debug') ? pass.judged.filter((j) => j.stale && !confirmed.has(j)) : [];
        for (const j of waiting) log.debug(`ipam gc: network ${cfg.network}: ${j.row.owner.containerId} (${j.row.owner.ifName}) stale, released after ${this.o.graceSec} s unless it changes: ${j.reason}`);
      } catch (e) {
        this.stats.errors++;
        log.warn(`ipam gc: network ${cfg.network}: ${(e as Error).message}`);
      } finally {
        client.close();
      }
      pending += tracker.pending;
    }
    this.stats.passes++;
    this.stats.pending = pending;
  }
}

// ---- the mesh (docs/mesh.md "Addresses"): this node's knit-mesh-ipam allocations -------------
//
// There is no pod list to judge against on the mesh, and no need for one: every attachment that
// holds an address of a bridge or overlay network has a host link here whose ifalias names it
// (pkg/iface/attachment.ts), and the kernel deletes that link with the container's netns. An
// attachment whose host link is gone at two looks at least `grace` apart, holding the same
// addresses both times, is stale: its addresses and its endpoint record are released. Never
// judged: a service's VIP or a node's load-balancer address (no container), and attachments of
// macvlan networks (no host link to look at).

/** What the mesh GC works on: this node's allocations (pkg/mesh/ipam.ts) and endpoints (pkg/mesh/networks.ts). */
export interface MeshGcTarget {
  attachments(): Array<{ network: string; owner: Owner; ips: string[] }>;
  release(network: string, owner: Owner): Promise<string[]>;
  /** The network's driver (undefined: not on the mesh any more). */
  driverOf(network: string): string | undefined;
  /** Drops this node's endpoint record of the attachment, if any. */
  dropEndpoint(network: string, owner: Owner): void;
}

export interface MeshJudgement { network: string; owner: Owner; ips: string[]; stale: boolean; reason: string }

/** Judges each attachment against the host links present (their aliases, parsed). */
export function judgeMesh(atts: ReturnType<MeshGcTarget['attachments']>, links: readonly AttachmentId[], driverOf: (n: string) => string | undefined): MeshJudgement[] {
  const have = new Set(links.map((l) => `${l.network}\0${l.containerId}\0${l.ifName}`));
  return atts.map((a): MeshJudgement => {
    const base = { network: a.network, owner: a.owner, ips: a.ips };
    if (isServiceOwner(a.owner)) return { ...base, stale: false, reason: 'a service\'s address (knitctl service rm frees it)' };
    const driver = driverOf(a.network);
    if (driver !== 'bridge' && driver !== 'overlay') return { ...base, stale: false, reason: driver ? `a ${driver} network: no host link to look at` : 'the network is gone (its blocks go with it)' };
    if (have.has(`${a.network}\0${a.owner.containerId}\0${a.owner.ifName}`)) return { ...base, stale: false, reason: 'its host link exists' };
    return { ...base, stale: true, reason: `container gone: no host link of ${a.owner.containerId.slice(0, 12)} (${a.owner.ifName}) on this node` };
  });
}

/** Stale sightings between passes, by attachment: confirmed when seen stale again, with the same addresses, `graceMs` or more later. */
export class MeshStaleTracker {
  private seen = new Map<string, { ips: string; since: number }>();

  constructor(readonly graceMs: number) {}

  confirm(stale: MeshJudgement[], now: number): MeshJudgement[] {
    const next = new Map<string, { ips: string; since: number }>();
    const out: MeshJudgement[] = [];
    for (const j of stale) {
      const k = `${j.network}\0${ownerKey(j.owner)}`;
      const prev = this.seen.get(k);
      const again = prev !== undefined && prev.ips === j.ips.join();
      const entry = again ? prev : { ips: j.ips.join(), since: now };
      if (again && now - entry.since >= this.graceMs) out.push(j); else next.set(k, entry);
    }
    this.seen = next;
    return out;
  }

  get pending(): number { return this.seen.size; }
}

/** The attachments whose host link is here (knitd's namespace: the host). */
export function hostAttachments(): AttachmentId[] {
  return withNetlink(null, (nl) => linkList(nl).map((l) => parseAttachmentAlias(l.alias)).filter((a): a is AttachmentId => !!a));
}

/** One pass: judge (of `network`, or all), confirm with the tracker, release what is confirmed (unless dryRun). */
export async function meshGcPass(t: MeshGcTarget, tracker: MeshStaleTracker, o: { network?: string; now: number; dryRun?: boolean; links?: () => AttachmentId[] }): Promise<{ judged: MeshJudgement[]; confirmed: MeshJudgement[] }> {
  const atts = t.attachments().filter((a) => !o.network || a.network === o.network);
  const judged = judgeMesh(atts, (o.links ?? hostAttachments)(), (n) => t.driverOf(n));
  const confirmed = tracker.confirm(judged.filter((j) => j.stale), o.now);
  if (!o.dryRun) {
    for (const j of confirmed) {
      await t.release(j.network, j.owner);
      t.dropEndpoint(j.network, j.owner);
    }
  }
  return { judged, confirmed };
}

/** knitd's pod GC on the mesh: a pass every interval (the first after one interval). */
export class MeshIpamGc {
  readonly stats: IpamGcStats = { passes: 0, released: 0, errors: 0, pending: 0 };
  private readonly tracker: MeshStaleTracker;
  private readonly loop = new Passes(() => this.runOnce(), () => this.o.intervalSec);

  constructor(private readonly o: { target: MeshGcTarget; intervalSec: number; graceSec: number; log: Logger; links?: () => AttachmentId[] }) {
    this.tracker = new MeshStaleTracker(o.graceSec * 1000);
  }

  start(): void { this.loop.start(); }

  stop(): void { this.loop.stop(); }

  async runOnce(now = Date.now()): Promise<MeshJudgement[]> {
    try {
      const p = await meshGcPass(this.o.target, this.tracker, { now, ...(this.o.links ? { links: this.o.links } : {}) });
      for (const j of p.confirmed) this.o.log.info(`ipam gc: network ${j.network}: released ${j.ips.join(', ')} of ${j.owner.containerId} (${j.owner.ifName}): ${j.reason}`);
      this.stats.released += p.confirmed.length;
      this.stats.pending = this.tracker.pending;
      return p.confirmed;
    } catch (e) {
      this.stats.errors++;
      this.o.log.warn(`ipam gc: ${(e as Error).message}`);
      return [];
    } finally {
      this.stats.passes++;
    }
  }
}
