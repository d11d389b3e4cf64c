// The small in-process meshes the mesh benchmarks of named networks and services run on.
import { MeshNode } from '../../pkg/mesh/node';
import { until } from './script';

/** `n` members b0..b<n-1> on 127.0.0.1, each told only b0, until every pair is connected. */
export async function fullMesh(n: number): Promise<MeshNode[]> {
  const nodes: MeshNode[] = [];
  for (let i = 0; i < n; i++) {
    const m = new MeshNode({ name: `b${i}`, secret: Buffer.from('bench'), listen: { host: '127.0.0.1', port: 0 }, peers: i ? [`127.0.0.1:${nodes[0]!.listenPort}`] : [], stateDir: null, ttlSec: 30 });
    await m.start();
    nodes.push(m);
  }
  await until(() => nodes.every((m) => m.connected().length === n - 1), 30_000, 'full mesh');
  return nodes;
}
