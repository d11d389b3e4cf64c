// Services through the local mesh-mode knitd (<run-dir>/mesh.sock, pkg/mesh/control.ts): what
// knitctl's service verbs use when there is no etcd (docs/services.md). The same calls as etcd's
// ServiceStore; knitd answers from its replica (pkg/mesh/services.ts) and puts creates to the vote.
import type { Service, ServiceRequest } from '../service/spec';
import type { Endpoint } from '../network/store';
import { controlCall } from './control';
import { MeshNetworkClient } from './network-client';

/** What knitctl's service verbs need: etcd's ServiceStore and this client both have it. */
export interface ServiceCatalog {
  list(network?: string): Promise<Service[]>;
  find(name: string, network?: string): Promise<Service[]>;
  create(req: ServiceRequest): Promise<Service>;
  remove(network: string, name: string): Promise<void>;
  readonly networks: { endpoints(network?: string): Promise<{ endpoints: Endpoint[] }> };
}

export class MeshServiceClient implements ServiceCatalog {
  readonly networks: MeshNetworkClient;

  constructor(readonly runDir: string) { this.networks = new MeshNetworkClient(runDir); }

  list(network?: string): Promise<Service[]> { return controlCall(this.runDir, { op: 'svc-ls', ...(network ? { network } : {}) }); }
  find(name: string, network?: string): Promise<Service[]> { return controlCall(this.runDir, { op: 'svc-find', name, ...(network ? { network } : {}) }); }
  create(req: ServiceRequest): Promise<Service> { return controlCall(this.runDir, { op: 'svc-create', req }, 30_000); }
  async remove(network: string, name: string): Promise<void> { await controlCall(this.runDir, { op: 'svc-rm', network, name }); }
}
