// What `knitctl status peers|connections` shows (weave status peers/connections): this node's
// connections and dial targets, and every member's record as the member publishes it.
import { rangeText } from './auth';
import type { MeshNode } from './node';

export interface MeshStatus {
  node: string;
  inc: string;
  port: number;
  /** The protocol versions this knitd speaks ("1..2"). */
  speaks: string;
  members: string[];
  need: number;
  connections: ReturnType<MeshNode['connections']>;
  peers: Array<{ name: string; inc: string; live: boolean; heardAgoMs: number | null; subnet: string | null; underlay: string | null; conns: Array<{ name: string; addr: string; dir: string }>; /** Protocol versions it speaks ("1..2"; "1": before ranges; null: not known here). */ proto: string | null }>;
  /** The node's counters, and the records of kinds this knitd does not know (a later one's): kept, and dropped over a bound. */
  counters: MeshNode['counters'] & { unknownRecordsKept: number; unknownRecordsDropped: number };
}

/** A member's protocol versions: from its hello when connected here, else from its record. */
function protoOf(node: MeshNode, conns: MeshStatus['connections'], name: string, pv: [number, number] | undefined): string | null {
  if (name === node.state.self) return rangeText({ proto: node.range[0], max: node.range[1] });
  const c = conns.find((x) => x.name === name && x.speaks);
  if (c) return c.speaks!;
  return pv ? rangeText({ proto: pv[0], max: pv[1] }) : null;
}

export function meshStatus(node: MeshNode): MeshStatus {
  const now = Date.now();
  const q = node.quorum();
  const connections = node.connections();
  return {
    node: node.state.self, inc: node.inc, port: node.listenPort, speaks: rangeText({ proto: node.range[0], max: node.range[1] }), members: q.members, need: q.need, connections,
    peers: [...node.state.nodes.values()].sort((a, b) => a.name.localeCompare(b.name)).map((n) => ({
      name: n.name, inc: n.inc, live: node.state.live(n.name, now),
      heardAgoMs: n.name === node.state.self ? 0 : node.state.heard.has(n.name) ? now - node.state.heard.get(n.name)! : null,
      subnet: n.lease?.subnet ?? null, underlay: n.lease?.underlayAddr ?? null, conns: n.conns, proto: protoOf(node, connections, n.name, n.pv),
    })),
    counters: { ...node.counters, unknownRecordsKept: node.state.opaque.size, unknownRecordsDropped: node.state.opaqueDropped },
  };
}

/**
 * `status connections`' protocol line: the versions in use, peers grouped by version and range,
 * older ones told to upgrade. A line below the table (the table's rows stay as scripts read them).
 */
export function protocolLine(s: Pick<MeshStatus, 'speaks' | 'connections'>): string {
  const ourMax = Number(s.speaks.split('..').pop());
  const groups = new Map<string, string[]>();
  for (const c of s.connections) {
    if (c.state !== 'established' || !c.name || c.proto === undefined) continue;
    const theirMax = Number(c.speaks!.split('..').pop());
    const key = `at ${c.proto} (speaking ${c.speaks}${theirMax < ourMax ? ': upgrade' : ''})`;
    groups.set(key, [...(groups.get(key) ?? []), c.name]);
  }
  const parts = [...groups].sort(([a], [b]) => b.localeCompare(a)).map(([k, names]) => `${names.sort().join(', ')} ${k}`);
  return `mesh protocol: this knitd speaks ${s.speaks}${parts.length ? `; ${parts.join('; ')}` : ''}`;
}
