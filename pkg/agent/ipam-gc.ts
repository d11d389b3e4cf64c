// knitd's pod GC of knit-etcd-ipam (with --datastore kubernetes). Every --ipam-gc-interval it
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

export class IpamGc {
  readonly stats: IpamGcStats = { passes: 0, released: 0, errors: 0, pending: 0 };
  /** One tracker per network: what each pass saw stale. */
  private readonly trackers = new Map<string, StaleTracker>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly o: IpamGcOptions) {}

  /** The first pass after one interval (the node's pods are running by then), then every interval. */
  start(): void {
    const next = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.runOnce().finally(next), this.o.intervalSec * 1000);
      this.timer.unref();
    };
    next();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

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
