// The named-network agent's source on the mesh (networks-source.ts, docs/mesh.md): networks are
// the replicated network records (tombstones left out), endpoints those in the records of live
// nodes. Changes are found by comparing with what was last reported, on every state change and
// every second (a silent node's endpoints go when its lease time passes, with no message).
// Peers' records for encrypted networks are the `enc` of live nodes' records (public key, key
// generation); this node's goes in its own record.
import type { Logger } from '../cni/log';
import type { MeshNode } from '../mesh/node';
import type { NodeContext } from '../network/conflist';
import { writeNodeFile } from '../network/node-file';
import type { Endpoint } from '../network/store';
import type { Listed, NetworksSource, OwnEncryption, PeerRecord, SourceEvents } from './networks-source';

const epKey = (e: Endpoint): string => `${e.node}/${e.network}/${e.containerId}/${e.ifName}`;

export class MeshNetworksSource implements NetworksSource {
  private on: SourceEvents | null = null;
  private nets = new Map<string, string>();
  private eps = new Map<string, string>();
  private peers = new Map<string, string>();
  private off: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly node: MeshNode, private readonly o: { nodeName: string; runDir: string; log: Logger }) {}

  conflistContext(): NodeContext { return { nodeName: this.o.nodeName, runDir: this.o.runDir }; }

  async open(nodeIp: string): Promise<void> {
    writeNodeFile(this.o.runDir, { nodeName: this.o.nodeName, nodeIp, lease: '', datastore: 'mesh', updated: new Date().toISOString() });
    await this.node.ready(10_000);
  }

  /** The node republishes its record (endpoints included) on its own heartbeat. */
  async keepAlive(): Promise<void> {}

  /** This node's key and generation go in its own record (the node publishes it at once when changed). */
  async publishNode(enc: OwnEncryption | null): Promise<void> {
    this.node.setEnc(enc ? { key: enc.key, gen: enc.gen } : undefined);
  }

  private snapshot(): Listed {
    const t = Date.now();
    const nodes = new Map<string, PeerRecord>();
    for (const n of this.node.state.nodes.values()) {
      if (!n.enc || n.name === this.o.nodeName || !this.node.state.live(n.name, t)) continue;
      nodes.set(n.name, { node: n.name, encKey: n.enc.key, encGen: n.enc.gen });
    }
    return {
      networks: new Map(this.node.state.networks().map((n) => [n.name, n])),
      endpoints: new Map(this.node.state.endpoints(t).map((e) => [epKey(e), e])),
      nodes,
    };
  }

  async list(on: SourceEvents): Promise<Listed> {
    const now = this.snapshot();
    this.on = on;
    this.nets = new Map([...now.networks].map(([k, v]) => [k, JSON.stringify(v)]));
    this.eps = new Map([...now.endpoints].map(([k, v]) => [k, JSON.stringify(v)]));
    this.peers = new Map([...now.nodes].map(([k, v]) => [k, JSON.stringify(v)]));
    if (!this.off) {
      this.off = this.node.onChange((c) => { if (c.kind !== 'config') this.diff(); });
      this.timer = setInterval(() => this.diff(), 1000);
      this.timer.unref?.();
    }
    return now;
  }

  /** Reports what changed since the last look. */
  private diff(): void {
    const on = this.on;
    if (!on) return;
    const now = this.snapshot();
    let changed = false;
    const walk = <T>(seen: Map<string, string>, cur: Map<string, T>, emit: (k: string, v: T | undefined) => void): void => {
      for (const k of [...seen.keys()]) if (!cur.has(k)) { seen.delete(k); emit(k, undefined); changed = true; }
      for (const [k, v] of cur) {
        const text = JSON.stringify(v);
        if (seen.get(k) !== text) { seen.set(k, text); emit(k, v); changed = true; }
      }
    };
    walk(this.nets, now.networks, (k, v) => on.network(k, v));
    walk(this.eps, now.endpoints, (k, v) => on.endpoint(k, v));
    walk(this.peers, now.nodes, (k, v) => on.node(k, v));
    if (changed) on.flush();
  }

  close(): void {
    this.off?.();
    if (this.timer) clearInterval(this.timer);
    this.on = null;
  }
}
