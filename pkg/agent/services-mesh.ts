// The service load balancer's source on the mesh (services-source.ts, docs/services.md): the
// replicated service records (pkg/mesh/services.ts writes them), this node's load-balancer
// address from its own address blocks (pkg/mesh/ipam.ts, owner lb-<node>), its endpoint record in
// this node's own mesh record (it leaves every view with the node's liveness, as its lease's
// would on etcd).
import type { MeshIpam } from '../mesh/ipam';
import type { MeshNetworks } from '../mesh/networks';
import type { MeshNode } from '../mesh/node';
import type { Network } from '../network/spec';
import type { Endpoint } from '../network/store';
import { lbOwner } from '../service/owners';
import type { Service } from '../service/spec';
import type { ServicesSource } from './services-source';

export class MeshServicesSource implements ServicesSource {
  readonly needsLease = false;
  private off: (() => void) | null = null;

  constructor(private readonly node: MeshNode, private readonly networks: MeshNetworks, private readonly ipam: MeshIpam) {}

  services(): Iterable<Service> { return this.node.state.services(); }

  async start(changed: () => void): Promise<void> {
    await this.node.ready(10_000);
    if (!this.off) this.off = this.node.onChange((c) => { if (c.kind === 'svc' || c.kind === 'net') changed(); });
  }

  async reserveLb(net: Network): Promise<string> {
    const [a] = await this.ipam.allocate(net.name, lbOwner(this.node.state.self), [], true);
    return a!.ip;
  }

  async releaseLb(network: string): Promise<void> { await this.ipam.release(network, lbOwner(this.node.state.self)); }

  async putEndpoint(e: Endpoint): Promise<void> { this.networks.putEndpoint(e); }

  async deleteEndpoint(e: Endpoint): Promise<void> { this.networks.deleteEndpoint(e); }

  close(): void { this.off?.(); this.off = null; }
}
