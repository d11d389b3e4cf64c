// Named networks and endpoints through the local mesh-mode knitd (<run-dir>/mesh.sock,
// pkg/mesh/control.ts): what knitctl's network verbs and knit-l2overlay use when there is no
// etcd (docs/mesh.md). The same calls as etcd's NetworkStore; knitd answers from its replica
// (pkg/mesh/networks.ts) and puts creates to the mesh's vote.
import { controlCall } from './control';
import type { CreateRequest, Network } from '../network/spec';
import type { Endpoint, EndpointId, NetworkCatalog } from '../network/store';

export class MeshNetworkClient implements NetworkCatalog {
  constructor(readonly runDir: string) {}

  list(): Promise<{ networks: Network[] }> { return controlCall(this.runDir, { op: 'net-ls' }); }
  get(name: string): Promise<Network | null> { return controlCall(this.runDir, { op: 'net-get', name }); }
  create(req: CreateRequest): Promise<Network> { return controlCall(this.runDir, { op: 'net-create', req }, 30_000); }
  async remove(name: string): Promise<void> { await controlCall(this.runDir, { op: 'net-rm', name }); }
  endpoints(network?: string): Promise<{ endpoints: Endpoint[] }> { return controlCall(this.runDir, { op: 'ep-ls', ...(network ? { network } : {}) }); }
  async putEndpoint(e: Endpoint): Promise<void> { await controlCall(this.runDir, { op: 'ep-put', ep: e }); }
  async deleteEndpoint(id: EndpointId): Promise<void> {
    await controlCall(this.runDir, { op: 'ep-del', id: { network: id.network, node: id.node, containerId: id.containerId, ifName: id.ifName } });
  }
}
