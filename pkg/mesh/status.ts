// What `knitctl status peers|connections` shows (weave status peers/connections): this node's
// connections and dial targets, and every member's record as the member publishes it.
import type { MeshNode } from './node';

export interface MeshStatus {
  node: string;
  inc: string;
  port: number;
  members: string[];
  need: number;
  connections: ReturnType<MeshNode['connections']>;
  peers: Array<{ name: string; inc: string; live: boolean; heardAgoMs: number | null; subnet: string | null; underlay: string | null; conns: Array<{ name: string; addr: string; dir: string }> }>;
  counters: MeshNode['counters'];
}

export function meshStatus(node: MeshNode): MeshStatus {
  const now = Date.now();
  const q = node.quorum();
  return {
    node: node.state.self, inc: node.inc, port: node.listenPort, members: q.members, need: q.need, connections: node.connections(),
    peers: [...node.state.nodes.values()].sort((a, b) => a.name.localeCompare(b.name)).map((n) => ({
      name: n.name, inc: n.inc, live: node.state.live(n.name, now),
      heardAgoMs: n.name === node.state.self ? 0 : node.state.heard.has(n.name) ? now - node.state.heard.get(n.name)! : null,
      subnet: n.lease?.subnet ?? null, underlay: n.lease?.underlayAddr ?? null, conns: n.conns,
    })),
    counters: node.counters,
  };
}
