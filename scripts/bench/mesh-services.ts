// Services on the mesh (docs/services.md "On the mesh"), simulated: N knitd mesh nodes (pkg/mesh,
// the real code, TCP on 127.0.0.1) in this one process, one overlay network. Measured per sample:
//   - create: `service create` on one node until its VIP is reserved, its claim won a majority
//     and its record is written;
//   - seen: until every node holds the service (what their load balancers and resolvers read);
//   - rm: `service rm` on another node until every node has the tombstone and the creator freed the VIP.
//   node --import tsx scripts/bench/mesh-services.ts [--nodes 5] [--samples 30]
// One event loop carries every node: the figures include their contention (an upper bound).
import { MeshIpam } from '../../pkg/mesh/ipam';
import { MeshNetworks } from '../../pkg/mesh/networks';
import { MeshServices } from '../../pkg/mesh/services';
import { arg, q, until } from './script';
import { fullMesh } from './mesh-nodes';


async function main(): Promise<void> {
  const n = Number(arg('nodes', '5'));
  const samples = Number(arg('samples', '30'));
  const nodes = await fullMesh(n);
  await new MeshNetworks(nodes[0]!).create({ name: 'app', driver: 'overlay', subnets: ['10.200.0.0/16'] });
  await until(() => nodes.every((m) => !!m.state.nets.get('app')?.net), 10_000, 'network everywhere', 1);
  const ipams = nodes.map((m) => new MeshIpam(m, null));
  const svcs = nodes.map((m, i) => new MeshServices(m, ipams[i]!));
  const r = { create: [] as number[], seen: [] as number[], rm: [] as number[] };
  for (let s = 0; s < samples; s++) {
    const k = s % n;
    const t0 = performance.now();
    const svc = await svcs[k]!.create({ name: `s${s}`, network: 'app', ports: ['tcp:80'] });
    r.create.push(performance.now() - t0);
    await until(() => nodes.every((m) => m.state.services().some((x) => x.id === svc.id)), 10_000, 'seen', 1);
    r.seen.push(performance.now() - t0);
    const t1 = performance.now();
    await svcs[(k + 1) % n]!.remove('app', svc.name);
    await until(() => nodes.every((m) => !m.state.services().some((x) => x.id === svc.id)) && !ipams[k]!.attachments('app').some((a) => a.owner.ifName === 'vip'), 10_000, 'rm', 1);
    r.rm.push(performance.now() - t1);
  }
  for (const m of nodes) m.stop();
  const f = (x: number[]): string => `${q(x, 0.5).toFixed(1)} / ${q(x, 0.99).toFixed(1)} ms`;
  console.log(`${n} nodes, ${samples} samples (p50 / p99):`);
  console.log(`  service create (VIP reserved, claim won, record written): ${f(r.create)}`);
  console.log(`  service on every node:                                    ${f(r.seen)}`);
  console.log(`  service rm on another node, gone everywhere, VIP freed:   ${f(r.rm)}`);
  process.exit(0);
}

void main();
