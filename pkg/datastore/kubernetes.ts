// The overlay's datastore on the Kubernetes API (knitd --datastore kubernetes), after flannel's
// kube subnet manager:
//   - a node's subnet is its Node.spec.podCIDR(s), assigned by kube-controller-manager
//     (--allocate-node-cidrs, i.e. kubeadm --pod-network-cidr); knit never picks one itself, and
//     while it is unassigned claiming fails with a clear error (no lease file: the plugin
//     answers 11 / STATUS 50);
//   - what peers need is published as annotations of the node: knit.dev/public-ip (underlay
//     address), knit.dev/backend, and one knit.dev/<key in kebab case> per key of the backend's
//     data (carried as is, never read here), e.g. knit.dev/public-key for publicKey;
//   - every Node is watched with an informer (client-node's ListWatch, with bookmarks; a 410 Gone
//     re-lists), plus a periodic full re-list; peers are the nodes with a podCIDR and a
//     knit.dev/public-ip annotation; a deleted Node (or one whose annotations go) is a 'del'.
//   - the network config is a file (the ConfigMap mounted in the DaemonSet), --net-conf.
//   - the encrypted overlay's key generation is the ConfigMap knit-keygen (kube-keygen.ts), read
//     by knitd's 5 s poll as etcd's <prefix>/keygen is.
// @kubernetes/client-node is loaded lazily (pkg/kube/client.ts): nothing on the plugin path pulls it in.
import * as fs from 'node:fs';
import type * as K8s from '@kubernetes/client-node';
import type { Logger } from '../cni/log';
import { nullLogger } from '../cni/log';
import { checkBackendData, sameBackendData, type ClaimResult, type Datastore, type KeyGeneration, type LeaseEvent, type SubnetLease, type Watch } from './datastore';
import { bumpKubeKeyGeneration, getKubeKeyGeneration, kubeNamespace } from './kube-keygen';
import { kubeClient, listPods, type KubeClient, type PodInfo } from '../kube';

export const KNIT_ANNOTATION_PREFIX = 'knit.dev/';
export const ANNOTATIONS = {
  publicIp: `${KNIT_ANNOTATION_PREFIX}public-ip`,
  backend: `${KNIT_ANNOTATION_PREFIX}backend`,
} as const;
/** The lease's own annotations; every other knit.dev/ annotation of a Node is backend data. */
const LEASE_ANNOTATIONS: readonly string[] = Object.values(ANNOTATIONS);

/** A backend data key's annotation: fooBar is knit.dev/foo-bar. */
export function backendDataAnnotation(key: string): string {
  return `${KNIT_ANNOTATION_PREFIX}${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** The backend data key of a knit.dev/ annotation (knit.dev/foo-bar is fooBar); null for the lease's own. */
export function backendDataKey(annotation: string): string | null {
  if (!annotation.startsWith(KNIT_ANNOTATION_PREFIX) || LEASE_ANNOTATIONS.includes(annotation)) return null;
  const name = annotation.slice(KNIT_ANNOTATION_PREFIX.length);
  return /^[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$/.test(name) ? name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase()) : null;
}

/** The backend data a Node publishes (its knit.dev/ annotations other than the lease's own). */
function backendDataOf(a: Record<string, string>): Record<string, string> | undefined {
  const data = Object.entries(a).flatMap(([k, v]) => { const key = backendDataKey(k); return key && v ? [[key, v] as const] : []; });
  return data.length ? Object.fromEntries(data) : undefined;
}
export const DEFAULT_NET_CONF = '/etc/knit/net-conf.json';
/** Events kept for watchLeases(revision) to replay; older revisions get onError (re-list). */
const EVENT_LOG = 4096;

export interface KubernetesDatastoreOptions {
  /** This node's name (its Node object). */
  nodeName: string;
  /** A kubeconfig file; default the in-cluster config (service account). */
  kubeconfig?: string;
  /** A kubeconfig as text (tests). */
  kubeconfigYaml?: string;
  /** The network config file (the mounted ConfigMap); default /etc/knit/net-conf.json. */
  netConf?: string;
  /** The network config as JSON text, instead of netConf. */
  networkConfig?: string;
  /** knit's namespace (the key generation's ConfigMap); default $POD_NAMESPACE, else knit-system. */
  namespace?: string;
  /** Seconds between full re-lists of the Nodes; default 300. */
  resyncSec?: number;
  log?: Logger;
}

type KNode = K8s.V1Node;

/** The node's IPv4 pod subnet, or undefined while unassigned. */
export function podCIDROf(n: KNode): string | undefined {
  const all = [...(n.spec?.podCIDRs ?? []), ...(n.spec?.podCIDR ? [n.spec.podCIDR] : [])];
  return all.find((c) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(c));
}

/** The lease a Node publishes: needs a podCIDR and knit.dev/public-ip. */
export function leaseOfNode(n: KNode): SubnetLease | null {
  const name = n.metadata?.name;
  const subnet = podCIDROf(n);
  const a = n.metadata?.annotations ?? {};
  const underlayAddr = a[ANNOTATIONS.publicIp];
  if (!name || !subnet || !underlayAddr) return null;
  const data = backendDataOf(a);
  return {
    nodeName: name, subnet, underlayAddr,
    ...(a[ANNOTATIONS.backend] ? { backend: a[ANNOTATIONS.backend] } : {}),
    ...(data ? { backendData: data } : {}),
  };
}

const sameLease = (a: SubnetLease | null | undefined, b: SubnetLease | null | undefined): boolean =>
  !!a && !!b && a.subnet === b.subnet && a.underlayAddr === b.underlayAddr && sameBackendData(a.backendData, b.backendData) && a.backend === b.backend && a.nodeName === b.nodeName;

interface Listener { onEvent: (e: LeaseEvent) => void; onError: (err: Error) => void }

export class KubernetesDatastore implements Datastore {
  private readonly log: Logger;
  private kube?: KubeClient;
  private informer?: K8s.ListWatch<KNode>;
  private starting?: Promise<void>;
  private listed = false;
  private lastError?: Error;
  private closed = false;
  private timers: NodeJS.Timeout[] = [];
  /** Nodes by name, as last seen (informer or re-list). */
  private readonly nodes = new Map<string, KNode>();
  /** Published leases by node name. */
  private readonly leases = new Map<string, SubnetLease>();
  private seq = 0;
  private events: Array<{ seq: number; e: LeaseEvent }> = [];
  private readonly listeners = new Set<Listener>();
  private claimed?: SubnetLease;
  private netConfig?: string;

  constructor(private readonly o: KubernetesDatastoreOptions) {
    this.log = o.log ?? nullLogger;
    if (o.networkConfig !== undefined) this.netConfig = o.networkConfig;
  }

  /** Loads the client and the kubeconfig (lazily: only knitd --datastore kubernetes does this). */
  private client(): KubeClient {
    if (!this.kube) this.kube = kubeClient(this.o);
    return this.kube;
  }

  /** This node's pods (the IPAM pod GC of knitd). */
  async listPods(nodeName: string): Promise<PodInfo[]> {
    return listPods(this.client().api, nodeName);
  }

  /** Starts the informer once; resolves after its first list (throws that list's error). */
  private async ensureStarted(): Promise<void> {
    if (this.closed) throw new Error('datastore closed');
    if (this.listed && this.informer) return;
    if (!this.starting) {
      this.starting = this.startInformer().finally(() => { this.starting = undefined; });
    }
    await this.starting;
  }

  private async startInformer(): Promise<void> {
    const { k8s, kc, api } = this.client();
    if (!this.informer) {
      const w = new k8s.Watch(kc);
      // client-node's informer does not ask for bookmarks; this watch does, so a quiet watch's
      // resourceVersion keeps up and its restart rarely meets 410 Gone.
      const watch = {
        watch: (p: string, q: Record<string, unknown>, cb: (t: string, o: unknown, w: unknown) => void, done: (err: unknown) => void) =>
          w.watch(p, { ...q, allowWatchBookmarks: true }, cb, done),
      } as unknown as K8s.Watch;
      const list = async (): Promise<K8s.V1NodeList> => {
        const l = await api.listNode();
        this.listed = true;
        this.lastError = undefined;
        this.applyList(l.items);
        return l;
      };
      const lw = new k8s.ListWatch<KNode>('/api/v1/nodes', watch, list, false);
      lw.on('add', (n) => this.apply(n));
      lw.on('update', (n) => this.apply(n));
      lw.on('delete', (n) => this.remove(n.metadata?.name ?? ''));
      lw.on('error', (err: unknown) => {
        this.lastError = err instanceof Error ? err : new Error(String(err));
        if (this.closed) return;
        this.log.warn(`node watch failed: ${this.lastError.message}; restarting in 1 s`);
        const t = setTimeout(() => { if (!this.closed) void lw.start(); }, 1000);
        this.timers.push(t);
      });
      this.informer = lw;
      const resync = (this.o.resyncSec ?? 300) * 1000;
      this.timers.push(setInterval(() => void this.resync(), resync));
    }
    await this.informer.start();
    if (!this.listed) throw this.lastError ?? new Error('cannot list Nodes');
  }

  /** A full re-list, applied as a diff (catches anything a watch may have missed). */
  async resync(): Promise<void> {
    if (this.closed || !this.kube) return;
    try {
      this.applyList((await this.kube.api.listNode()).items);
    } catch (e) {
      this.log.warn(`node re-list failed: ${(e as Error).message}`);
    }
  }

  private applyList(items: KNode[]): void {
    const names = new Set(items.map((n) => n.metadata?.name ?? ''));
    for (const name of [...this.nodes.keys()]) if (!names.has(name)) this.remove(name);
    for (const n of items) this.apply(n);
  }

  private apply(n: KNode): void {
    const name = n.metadata?.name;
    if (!name) return;
    this.nodes.set(name, n);
    const old = this.leases.get(name);
    const next = leaseOfNode(n);
    if (sameLease(old, next)) return;
    if (old && (!next || old.subnet !== next.subnet)) this.emit({ type: 'del', subnet: old.subnet });
    if (next) {
      const lease = { ...next, revision: this.seq + 1 };
      this.leases.set(name, lease);
      this.emit({ type: 'put', lease });
    } else {
      this.leases.delete(name);
    }
  }

  private remove(name: string): void {
    this.nodes.delete(name);
    const old = this.leases.get(name);
    if (!old) return;
    this.leases.delete(name);
    this.emit({ type: 'del', subnet: old.subnet });
  }

  private emit(e: LeaseEvent): void {
    this.seq++;
    this.events.push({ seq: this.seq, e });
    if (this.events.length > EVENT_LOG) this.events.splice(0, this.events.length - EVENT_LOG);
    for (const l of this.listeners) l.onEvent(e);
  }

  async getNetworkConfig(): Promise<string | null> {
    if (this.netConfig !== undefined) return this.netConfig;
    const file = this.o.netConf ?? DEFAULT_NET_CONF;
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  /** Kept in memory only: in a cluster the network config is the ConfigMap (--net-conf). */
  async putNetworkConfig(json: string): Promise<void> {
    this.netConfig = json;
  }

  async listLeases(): Promise<{ leases: SubnetLease[]; revision: number }> {
    await this.ensureStarted();
    return { leases: [...this.leases.values()], revision: this.seq };
  }

  /** This node's podCIDR; a clear error while the controller manager has not assigned one. */
  async assignedSubnet(nodeName: string): Promise<string> {
    await this.ensureStarted();
    let n = this.nodes.get(nodeName);
    if (!n) n = await this.readNode(nodeName);
    const subnet = podCIDROf(n);
    if (!subnet) {
      throw new Error(`node ${nodeName} has no podCIDR assigned yet (spec.podCIDR empty): the controller manager assigns them with --allocate-node-cidrs and --cluster-cidr (kubeadm init --pod-network-cidr)`);
    }
    return subnet;
  }

  private async readNode(name: string): Promise<KNode> {
    try {
      const n = await this.client().api.readNode({ name });
      this.apply(n);
      return n;
    } catch (e) {
      if ((e as { code?: number }).code === 404) throw new Error(`node ${name} does not exist in the Kubernetes API (--node-name must be the Node's name)`);
      throw e;
    }
  }

  /** Publishes the lease as annotations of this node; refused when the subnet is not its podCIDR. */
  async claim(lease: SubnetLease, _ttlSec: number): Promise<ClaimResult> {
    const subnet = await this.assignedSubnet(lease.nodeName);
    if (subnet !== lease.subnet) return { ok: false, holder: `(node ${lease.nodeName}'s podCIDR is ${subnet})` };
    checkBackendData(lease.backendData);
    const have = this.nodes.get(lease.nodeName)?.metadata?.annotations ?? {};
    const want: Record<string, string | null> = {
      [ANNOTATIONS.publicIp]: lease.underlayAddr,
      [ANNOTATIONS.backend]: lease.backend ?? null,
      // Backend data of before (another backend's) goes; this backend's is set.
      ...Object.fromEntries(Object.keys(have).filter((k) => backendDataKey(k) !== null).map((k) => [k, null])),
      ...Object.fromEntries(Object.entries(lease.backendData ?? {}).map(([k, v]) => [backendDataAnnotation(k), v])),
    };
    if (Object.entries(want).some(([k, v]) => (have[k] ?? null) !== v)) {
      const { k8s, api } = this.client();
      const n = await api.patchNode({ name: lease.nodeName, body: { metadata: { annotations: want } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
      this.apply(n);
      this.log.info(`published ${lease.subnet} on node ${lease.nodeName}: ${lease.underlayAddr}${Object.entries(lease.backendData ?? {}).map(([k, v]) => ` ${k}=${v}`).join('')}`);
    }
    this.claimed = { ...lease };
    return { ok: true };
  }

  /** No TTL on the API: false when our annotations or our podCIDR changed (the agent re-claims). */
  async keepAlive(): Promise<boolean> {
    const c = this.claimed;
    if (!c) return false;
    const now = this.leases.get(c.nodeName);
    if (now && now.subnet === c.subnet && now.underlayAddr === c.underlayAddr && sameBackendData(now.backendData, c.backendData)) return true;
    this.claimed = undefined;
    return false;
  }

  /** Removes the knit annotations of a node (its podCIDR stays the controller manager's). */
  async releaseNode(nodeName: string): Promise<number> {
    await this.ensureStarted();
    const have = this.nodes.get(nodeName)?.metadata?.annotations ?? {};
    const mine = Object.keys(have).filter((k) => k.startsWith(KNIT_ANNOTATION_PREFIX));
    if (!mine.length) return 0;
    const { k8s, api } = this.client();
    const n = await api.patchNode({ name: nodeName, body: { metadata: { annotations: Object.fromEntries(mine.map((k) => [k, null])) } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    this.apply(n);
    return 1;
  }

  /** The key generation (ConfigMap knit-keygen); null while nobody rotated. */
  async getKeyGeneration(): Promise<KeyGeneration | null> {
    return getKubeKeyGeneration(this.client(), this.o.namespace ?? kubeNamespace());
  }

  /** Compare-and-swap on the ConfigMap's resourceVersion: one writer wins a concurrent bump. */
  async bumpKeyGeneration(expect: number | null): Promise<KeyGeneration> {
    return bumpKubeKeyGeneration(this.client(), this.o.namespace ?? kubeNamespace(), expect);
  }

  /** Lease changes after `revision` (replayed from the event log), then live ones. */
  watchLeases(revision: number, onEvent: (e: LeaseEvent) => void, onError: (err: Error) => void): Watch {
    const l: Listener = { onEvent, onError };
    const first = this.events[0]?.seq ?? this.seq + 1;
    if (revision < first - 1) {
      setImmediate(() => onError(new Error(`revision ${revision} is older than the kept events (${first}): re-list`)));
      return { close() { /* nothing */ } };
    }
    for (const { seq, e } of this.events) if (seq > revision) onEvent(e);
    this.listeners.add(l);
    return { close: () => { this.listeners.delete(l); } };
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) { clearTimeout(t); clearInterval(t); }
    this.timers = [];
    this.listeners.clear();
    void this.informer?.stop();
  }
}
