// The service load balancer's source on etcd (services-source.ts): a watch of <prefix>/services/,
// the node's load-balancer address from knit-etcd-ipam under the pseudo node knit-services, its
// endpoint record on the node's lease (docs/services.md).
import type { Logger } from '../cni/log';
import { EtcdClient, prefixEnd } from '../etcd/client';
import { EtcdWatch, type WatchEvent } from '../etcd/watch';
import type { EtcdConnConfig } from '../ipam/etcd-config';
import { EtcdAllocator } from '../ipam/etcd-allocator';
import type { Network } from '../network/spec';
import { NetworkStore, type Endpoint } from '../network/store';
import { decodeService, servicesPrefix, type Service } from '../service/spec';
import { lbOwner, serviceIpamConfig } from '../service/store';
import type { ServicesSource } from './services-source';

export class EtcdServicesSource implements ServicesSource {
  readonly needsLease = true;
  private readonly client: EtcdClient;
  private readonly store: NetworkStore;
  private readonly byKey = new Map<string, Service>();
  private watch: EtcdWatch | null = null;
  private stopped = false;

  constructor(private readonly conn: EtcdConnConfig, private readonly nodeName: string, private readonly log: Logger) {
    this.client = new EtcdClient(conn);
    this.store = new NetworkStore(this.client, conn.prefix);
  }

  services(): Iterable<Service> { return this.byKey.values(); }

  async start(changed: () => void, failed: (e: Error) => void): Promise<void> {
    const p = servicesPrefix(this.conn.prefix);
    const r = await this.client.range({ key: p, rangeEnd: prefixEnd(p) });
    this.byKey.clear();
    for (const kv of r.kvs) { const s = decodeService(kv.value); if (s) this.byKey.set(kv.key.toString(), s); }
    this.watch?.close();
    if (this.stopped) return;
    this.watch = new EtcdWatch({
      conn: this.conn, client: this.client, prefix: p, revision: r.revision,
      onEvents: (events) => { for (const ev of events) this.onEvent(ev); changed(); },
      onError: (err) => {
        if (this.stopped) return;
        this.log.warn(`watch ${p}: ${err.message}; listing again`);
        setTimeout(() => void this.start(changed, failed).then(changed, failed), 1000).unref();
      },
    });
  }

  private onEvent(ev: WatchEvent): void {
    const key = ev.kv.key.toString();
    const s = ev.type === 'del' ? null : decodeService(ev.kv.value);
    if (s) this.byKey.set(key, s); else this.byKey.delete(key);
  }

  async reserveLb(net: Network): Promise<string> {
    const [a] = await new EtcdAllocator(serviceIpamConfig(net, this.conn.prefix), this.client).allocate(lbOwner(this.nodeName));
    return a!.ip;
  }

  async releaseLb(_network: string, net: Network | undefined): Promise<void> {
    if (net) await new EtcdAllocator(serviceIpamConfig(net, this.conn.prefix), this.client).release(lbOwner(this.nodeName));
  }

  async putEndpoint(e: Endpoint, lease: string | undefined): Promise<void> { await this.store.putEndpoint(e, lease!); }

  async deleteEndpoint(e: Endpoint): Promise<void> { await this.store.deleteEndpoint(e); }

  close(): void {
    this.stopped = true;
    this.watch?.close();
    this.client.close();
  }
}
