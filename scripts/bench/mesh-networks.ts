// Named networks on the mesh (docs/mesh.md, design D21), simulated: N knitd mesh nodes (pkg/mesh,
// the real code, TCP on 127.0.0.1) in this one process. Measured per sample:
//   - create: `network create` on one node until its claim won a majority and the record is written;
//   - seen: until every node holds the network's record (what their agents render conflists from);
//   - endpoint: an endpoint written on one node until every other node holds it;
//   - first address: an ADD that claims a new block by votes; next address: from the node's own block.
//   node --import tsx scripts/bench/mesh-networks.ts [--nodes 5] [--samples 30]
// One event loop carries every node: the figures include their contention (an upper bound).
import { MeshIpam } from '../../pkg/mesh/ipam';
import { MeshNetworks } from '../../pkg/mesh/networks';
import { arg, q, until } from './script';
import { fullMesh } from './mesh-nodes';


async function main(): Promise<void> {
  const n = Number(arg('nodes', '5'));
  const samples = Number(arg('samples', '30'));
  const nodes = await fullMesh(n);
  const nets = nodes.map((m) => new MeshNetworks(m));
  const r = { create: [] as number[], seen: [] as number[], endpoint: [] as number[], first: [] as number[], next: [] as number[] };
  for (let s = 0; s < samples; s++) {
    const k = s % n;
    const t0 = performance.now();
    const net = await nets[k]!.create({ name: `n${s}`, driver: 'overlay', subnets: [`10.${100 + Math.floor(s / 200)}.${s % 200}.0/24`] });
    r.create.push(performance.now() - t0);
    await until(() => nodes.every((m) => m.state.nets.get(net.name)?.net?.id === net.id), 10_000, 'seen', 1);
    r.seen.push(performance.now() - t0);
    const owner = nodes[(k + 1) % n]!;
    const t1 = performance.now();
    new MeshNetworks(owner).putEndpoint({ network: net.name, containerId: `c${s}`, ifName: 'eth0', node: owner.state.self, nodeIp: '192.0.2.1', mac: '02:00:00:00:00:01', ips: ['10.0.0.2/24'], created: new Date().toISOString() });
    await until(() => nodes.every((m) => m.state.endpoints(Date.now()).some((e) => e.containerId === `c${s}`)), 10_000, 'endpoint', 1);
    r.endpoint.push(performance.now() - t1);
    const ipam = new MeshIpam(owner, null);
    const t2 = performance.now();
    await ipam.allocate(net.name, { containerId: `a${s}`, ifName: 'eth0' }, []);
    r.first.push(performance.now() - t2);
    const t3 = performance.now();
    await ipam.allocate(net.name, { containerId: `b${s}`, ifName: 'eth0' }, []);
    r.next.push(performance.now() - t3);
  }
  for (const m of nodes) m.stop();
  const f = (x: number[]): string => `${q(x, 0.5).toFixed(1)} / ${q(x, 0.99).toFixed(1)} ms`;
  console.log(`${n} nodes, ${samples} samples (p50 / p99):`);
  console.log(`  create (claim won, record written): ${f(r.create)}`);
  console.log(`  network on every node:             ${f(r.seen)}`);
  console.log(`  endpoint on every node:            ${f(r.endpoint)}`);
  console.log(`  ADD, first address (block claim):  ${f(r.first)}`);
  console.log(`  ADD, next address (own block):     ${f(r.next)}`);
  process.exit(0);
}

void main();
