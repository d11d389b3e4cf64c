// knitctl in mesh mode (docs/mesh.md): no datastore to dial, the local knitd answers through
// <run-dir>/mesh.sock. Used by `status peers`, `status connections`, and by `peers`,
// `pod-network set/get` and `node rm` when the run dir holds a mesh-mode knitd's socket and no
// etcd endpoint is given.
//   knitctl status connections   this node's connections: direction, address, state, peer; the protocol version of each (weave status connections)
//   knitctl status peers         every member (its protocol versions) and its connections as it publishes them (weave status peers)
import type { CommandModule, Options } from 'yargs';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';
import { controlCall, hasControl } from '../../../pkg/mesh/control';
import { protocolLine, type MeshStatus } from '../../../pkg/mesh/status';
import { leaf, str, table, value, type Ctx, type Flags } from '../common';

const runDirOpt: Options = value(`knitd's --run-dir (default ${DEFAULT_RUN_DIR})`);
const json: Options = { type: 'boolean', describe: 'as JSON' };

/**
 * The run dir of a mesh-mode knitd when this command should go there (no etcd endpoint given),
 * else null. For commands whose --run-dir exists only for the mesh (peers, pod-network, node rm)
 * an explicit --run-dir means the mesh, so a knitd not (yet) there is an error saying so.
 */
export function meshRunDir(a: Flags, env: NodeJS.ProcessEnv, runDirMeansMesh = true): string | null {
  if (a['etcd-endpoints'] !== undefined || env.KNIT_ETCD_ENDPOINTS) return null;
  const given = str(a, 'run-dir');
  const dir = given ?? DEFAULT_RUN_DIR;
  return hasControl(dir) || (given !== undefined && runDirMeansMesh) ? dir : null;
}

const ago = (ms: number | null): string => (ms === null ? 'never' : ms < 1000 ? 'now' : `${Math.round(ms / 1000)}s ago`);
const arrow = (dir: string): string => (dir === 'out' ? '->' : '<-');

export function commands(ctx: Ctx): CommandModule[] {
  return [
    leaf(ctx, ['status', 'connections'], {
      command: 'connections',
      describe: 'the mesh: this node\'s connections (direction, address, state, peer), through the local knitd',
      options: { 'run-dir': runDirOpt, json },
      run: async (a) => {
        const s = await controlCall<MeshStatus>(str(a, 'run-dir') ?? DEFAULT_RUN_DIR, { op: 'status' });
        if (a.json) return JSON.stringify({ node: s.node, inc: s.inc, port: s.port, connections: s.connections, counters: s.counters }, null, 2);
        const rows = s.connections.sort((x, y) => x.addr.localeCompare(y.addr)).map((c) => [
          arrow(c.dir), c.addr, c.state, c.name ? `${c.name} (${c.inc})` : '-', c.error ?? '',
        ]);
        return [`node ${s.node} (${s.inc}), mesh port ${s.port}: ${s.connections.filter((c) => c.state === 'established').length} established`,
          table(['DIR', 'ADDRESS', 'STATE', 'PEER', 'INFO'], rows), protocolLine(s)].join('\n');
      },
    }),
    leaf(ctx, ['status', 'peers'], {
      command: 'peers',
      describe: 'the mesh as each member publishes it: every member, its subnet, when last heard, its connections; the quorum',
      options: { 'run-dir': runDirOpt, json },
      run: async (a) => {
        const s = await controlCall<MeshStatus>(str(a, 'run-dir') ?? DEFAULT_RUN_DIR, { op: 'status' });
        if (a.json) return JSON.stringify({ node: s.node, members: s.members, need: s.need, peers: s.peers }, null, 2);
        const lines = [`${s.members.length} member(s); a subnet claim needs ${s.need} vote(s)`];
        for (const p of s.peers) {
          lines.push(`${p.name} (${p.inc})${p.name === s.node ? ' [this node]' : ''}  ${p.live ? 'live' : 'GONE'}, heard ${ago(p.heardAgoMs)}, protocol ${p.proto ?? '?'}, subnet ${p.subnet ?? '-'}${p.underlay ? ` via ${p.underlay}` : ''}`);
          for (const c of [...p.conns].sort((x, y) => x.name.localeCompare(y.name))) lines.push(`   ${arrow(c.dir)} ${c.addr.padEnd(22)} ${c.name}`);
        }
        return lines.join('\n');
      },
    }),
  ];
}

/** `knitctl node rm` on the mesh. */
export async function meshNodeRm(dir: string, name: string): Promise<string> {
  const r = await controlCall<{ released: number; already: boolean }>(dir, { op: 'node-rm', name });
  if (r.already) return `node ${name} was already released; nothing to do`;
  return `released ${r.released} lease(s) of node ${name} on the mesh; every node drops its routes and its subnet is free again`;
}
