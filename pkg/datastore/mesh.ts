// The overlay's datastore on the knitd mesh (pkg/mesh, docs/mesh.md): no etcd, no API server.
// Leases are the `lease` field of each node's own record; a subnet is claimed with the votes of
// a majority of the known members, so two nodes never hold one subnet, not even across a
// partition (the minority side gets an error, which knitd retries, never a guess). A node not
// heard from for its lease time leaves every datapath (a 'del' event here), but keeps its
// subnet until it comes back or `knitctl node rm` releases it.
import type { MeshNode } from '../mesh/node';
import { NoQuorumError } from '../mesh/node';
import type { NodeRecord } from '../mesh/state';
import { checkBackendData, sameBackendData, type ClaimResult, type Datastore, type KeyGeneration, type LeaseEvent, type SubnetLease, type Watch } from './datastore';

/** How long a call waits for the first sync with a peer before answering an error. */
const READY_MS = 10_000;

export class MeshDatastore implements Datastore {
  private revision = 0;
  private readonly watchers = new Set<(e: LeaseEvent) => void>();
  /** The live leases as last reported to watchers, by subnet. */
  private reported = new Map<string, SubnetLease>();
  private readonly timer: NodeJS.Timeout;
  private readonly off: () => void;

  constructor(readonly node: MeshNode) {
    this.off = node.onChange(() => this.diff());
    // Expiry is a matter of time, not of a message: look every second.
    this.timer = setInterval(() => this.diff(), 1000);
    this.timer.unref?.();
    this.reported = this.liveMap();
  }

  async getNetworkConfig(): Promise<string | null> {
    await this.node.ready(READY_MS);
    return this.node.state.config?.json ?? null;
  }

  async putNetworkConfig(json: string): Promise<void> {
    this.node.setConfig(json);
  }

  async listLeases(): Promise<{ leases: SubnetLease[]; revision: number }> {
    await this.node.ready(READY_MS);
    return { leases: [...this.liveMap().values()], revision: this.revision };
  }

  async claim(lease: SubnetLease, ttlSec: number): Promise<ClaimResult> {
    await this.node.ready(READY_MS);
    checkBackendData(lease.backendData);
    this.node.setTtl(ttlSec);
    const want = {
      subnet: lease.subnet, underlayAddr: lease.underlayAddr, ...(lease.backend ? { backend: lease.backend } : {}),
      ...(lease.backendData ? { backendData: lease.backendData } : {}),
    };
    const cur = this.node.ownLease;
    if (cur && cur.subnet === lease.subnet && !this.node.state.rms.has(lease.nodeName)) {
      // Already ours (granted before): only what is published changes.
      if (cur.underlayAddr !== want.underlayAddr || cur.backend !== want.backend || !sameBackendData(cur.backendData, want.backendData)) this.node.updateLease(want);
      // Still ask the members again after a restart: their votes confirm nobody else got it.
      if (this.confirmed) return { ok: true };
    }
    const r = await this.node.claim(want, READY_MS);
    if (r.ok) this.confirmed = true;
    this.diff();
    return r.ok ? { ok: true } : { ok: false, holder: r.holder! };
  }

  private confirmed = false;

  async keepAlive(): Promise<boolean> {
    const own = this.node.ownLease;
    if (!own) { this.confirmed = false; return false; }
    this.node.publishSelf();
    return true;
  }

  /** The key generation as this node's replica has it (a record every member holds, state.ts). */
  async getKeyGeneration(): Promise<KeyGeneration | null> {
    await this.node.ready(READY_MS);
    const g = this.node.state.keygen;
    return g ? { generation: g.generation, at: g.at } : null;
  }

  /** Moves it from `expect` unless the replica already moved; every member gets it as it gets the config. */
  async bumpKeyGeneration(expect: number | null): Promise<KeyGeneration> {
    await this.node.ready(READY_MS);
    return this.node.bumpKeyGeneration(expect);
  }

  async releaseNode(nodeName: string): Promise<number> {
    await this.node.ready(READY_MS);
    const n = this.node.removeNode(nodeName);
    this.diff();
    return n ?? 0;
  }

  watchLeases(_revision: number, onEvent: (e: LeaseEvent) => void, _onError: (err: Error) => void): Watch {
    this.watchers.add(onEvent);
    return { close: () => { this.watchers.delete(onEvent); } };
  }

  close(): void {
    clearInterval(this.timer);
    this.off();
    this.watchers.clear();
  }

  /** Every live node's lease (this node's always), by subnet. */
  private liveMap(): Map<string, SubnetLease> {
    const now = Date.now();
    const m = new Map<string, SubnetLease>();
    for (const n of this.node.state.nodes.values()) {
      if (!n.lease || !this.node.state.live(n.name, now)) continue;
      m.set(n.lease.subnet, toLease(n));
    }
    return m;
  }

  /** Reports what changed in the live lease set since the last look. */
  private diff(): void {
    const now = this.liveMap();
    const events: LeaseEvent[] = [];
    for (const s of this.reported.keys()) if (!now.has(s)) events.push({ type: 'del', subnet: s });
    for (const [s, l] of now) {
      const old = this.reported.get(s);
      if (!old || old.nodeName !== l.nodeName || old.underlayAddr !== l.underlayAddr || old.backend !== l.backend || !sameBackendData(old.backendData, l.backendData)) events.push({ type: 'put', lease: l });
    }
    this.reported = now;
    if (!events.length) return;
    this.revision++;
    for (const e of events) for (const w of this.watchers) w(e);
  }
}

function toLease(n: NodeRecord): SubnetLease {
  const l = n.lease!;
  return {
    nodeName: n.name, subnet: l.subnet, underlayAddr: l.underlayAddr, ...(l.backend ? { backend: l.backend } : {}),
    ...(l.backendData && Object.keys(l.backendData).length ? { backendData: l.backendData } : {}),
  };
}

export { NoQuorumError };
