// knitd's second component: the overlay agent (pkg/agent/agent.ts) over etcd, started when
// --etcd-endpoints (or $KNIT_ETCD_ENDPOINTS) is given, or over the Kubernetes API with
// --datastore kubernetes (pkg/datastore/kubernetes.ts: --kubeconfig, else the in-cluster config;
// the network config from --net-conf). Loaded lazily: a knitd that only serves CNI requests
// never loads the etcd client, and only --datastore kubernetes loads @kubernetes/client-node.
import * as os from 'node:os';
import type { Logger } from '../../pkg/cni/log';

export const OVERLAY_FLAGS = {
  datastore: { type: 'string' },
  kubeconfig: { type: 'string' },
  'net-conf': { type: 'string' },
  'etcd-endpoints': { type: 'string' },
  'etcd-prefix': { type: 'string' },
  'etcd-cafile': { type: 'string' },
  'etcd-certfile': { type: 'string' },
  'etcd-keyfile': { type: 'string' },
  'etcd-username': { type: 'string' },
  'etcd-password': { type: 'string' },
  'node-name': { type: 'string' },
  iface: { type: 'string' },
  'run-dir': { type: 'string' },
  'state-dir': { type: 'string' },
  'lease-ttl': { type: 'string' },
  'resync-interval': { type: 'string' },
  'metrics-addr': { type: 'string' },
  'cni-conf-dir': { type: 'string' },
  'ipam-gc-interval': { type: 'string' },
  'ipam-gc-grace': { type: 'string' },
  peers: { type: 'string' },
  'mesh-listen': { type: 'string' },
  'mesh-password': { type: 'string' },
  'mesh-password-file': { type: 'string' },
  'mesh-fanout': { type: 'string' },
  'mesh-full-size': { type: 'string' },
  dns: { type: 'string' },
  'dns-resolv-conf': { type: 'string' },
  'key-rotation-interval': { type: 'string' },
} as const;

export interface OverlayFlags {
  /** --datastore kubernetes (absent: etcd). */
  kubernetes?: {
    kubeconfig?: string;
    netConf: string;
    /** The pod GC of knit-etcd-ipam networks in confDir (pkg/agent/ipam-gc.ts); intervalSec 0: off. */
    ipamGc: { confDir: string; intervalSec: number; graceSec: number };
  };
  /** --datastore mesh (cmd/knitd/mesh.ts, docs/mesh.md). */
  mesh?: import('./mesh').MeshFlags;
  /** With the mesh: the pod GC of this node's knit-mesh-ipam addresses (pkg/agent/ipam-gc.ts; intervalSec 0: off). */
  meshIpamGc?: { intervalSec: number; graceSec: number };
  endpoints: string[];
  prefix: string;
  tls?: { ca?: string; cert?: string; key?: string };
  username?: string;
  password?: string;
  nodeName: string;
  iface?: string;
  runDir: string;
  stateDir: string;
  /** Where knitd writes the conflists of named networks (etcd), where the IPAM GC reads them (kubernetes). */
  confDir: string;
  ttlSec: number;
  resyncSec: number;
  /** HOST:PORT for /metrics and /healthz. */
  metricsAddr?: string;
  /** The resolver of named networks (docs/dns.md): on unless --dns off; upstreams from resolvConf. */
  dns: { on: boolean; resolvConf: string };
  /** Encrypted pod network and named networks: move the key generation every this many seconds (0: only `knitctl key rotate`). */
  keyRotationSec?: number;
}

const posInt = (flag: string, v: string | undefined, dflt: number, min = 1): number => {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`invalid --${flag} ${v}: a whole number of seconds ≥ ${min}`);
  return n;
};

/** The overlay flags, or undefined when no etcd endpoint is configured (CNI serving only). */
export function overlayFlags(v: Record<string, string | undefined>, env: NodeJS.ProcessEnv = process.env): OverlayFlags | undefined {
  const eps = v['etcd-endpoints'] ?? env.KNIT_ETCD_ENDPOINTS;
  const ds = v.datastore ?? env.KNIT_DATASTORE;
  if (ds !== undefined && ds !== 'etcd' && ds !== 'kubernetes' && ds !== 'mesh') throw new Error(`invalid --datastore ${ds}: etcd, kubernetes or mesh`);
  if (ds === 'mesh') {
    if (v['etcd-endpoints']) throw new Error('--etcd-endpoints and --datastore mesh do not go together (the mesh needs no etcd)');
    for (const f of ['kubeconfig', 'net-conf']) if (v[f] !== undefined) throw new Error(`--${f} is for --datastore kubernetes`);
    const { meshFlags } = require('./mesh') as typeof import('./mesh');
    const ipamGc = { intervalSec: posInt('ipam-gc-interval', v['ipam-gc-interval'], 300, 0), graceSec: posInt('ipam-gc-grace', v['ipam-gc-grace'], 300, 0) };
    return { mesh: meshFlags(v, env), meshIpamGc: ipamGc, ...common(v, env, []) };
  }
  for (const f of ['peers', 'mesh-listen', 'mesh-password', 'mesh-password-file', 'mesh-fanout', 'mesh-full-size']) {
    if (v[f] !== undefined) throw new Error(`--${f} is for --datastore mesh`);
  }
  if (ds === 'kubernetes') {
    if (v['etcd-endpoints']) throw new Error('--etcd-endpoints and --datastore kubernetes do not go together');
    const kubeconfig = v.kubeconfig ?? env.KUBECONFIG;
    return {
      kubernetes: {
        ...(kubeconfig ? { kubeconfig } : {}), netConf: v['net-conf'] ?? '/etc/knit/net-conf.json',
        ipamGc: {
          confDir: v['cni-conf-dir'] ?? '/etc/cni/net.d',
          intervalSec: posInt('ipam-gc-interval', v['ipam-gc-interval'], 300, 0),
          graceSec: posInt('ipam-gc-grace', v['ipam-gc-grace'], 300, 0),
        },
      },
      ...common(v, env, []),
    };
  }
  for (const f of ['ipam-gc-interval', 'ipam-gc-grace']) {
    if (v[f] !== undefined) throw new Error(`--${f} is for --datastore kubernetes or mesh (the IPAM GC lists the node's pods, or looks at its attachments' host links)`);
  }
  if (!eps) {
    if (ds === 'etcd') throw new Error('--datastore etcd needs --etcd-endpoints (or $KNIT_ETCD_ENDPOINTS)');
    return undefined;
  }
  const endpoints = eps.split(',').map((s) => s.trim()).filter(Boolean);
  for (const e of endpoints) if (!/^https?:\/\/[^/]+/.test(e)) throw new Error(`invalid --etcd-endpoints ${e}: http://HOST:PORT or https://HOST:PORT`);
  const tls = { ...(v['etcd-cafile'] ? { ca: v['etcd-cafile'] } : {}), ...(v['etcd-certfile'] ? { cert: v['etcd-certfile'] } : {}), ...(v['etcd-keyfile'] ? { key: v['etcd-keyfile'] } : {}) };
  if (!!tls.cert !== !!tls.key) throw new Error('--etcd-certfile and --etcd-keyfile go together');
  const password = v['etcd-password'] ?? env.KNIT_ETCD_PASSWORD;
  return {
    ...common(v, env, endpoints),
    ...(Object.keys(tls).length ? { tls } : {}),
    ...(v['etcd-username'] ? { username: v['etcd-username'] } : {}), ...(password ? { password } : {}),
  };
}

function common(v: Record<string, string | undefined>, env: NodeJS.ProcessEnv, endpoints: string[]): OverlayFlags {
  const nodeName = v['node-name'] ?? env.KNIT_NODE_NAME ?? os.hostname();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(nodeName)) throw new Error(`invalid --node-name ${nodeName}: letters, digits, . _ -`);
  return {
    endpoints, prefix: (v['etcd-prefix'] ?? '/knit').replace(/\/+$/, '') || '/knit',
    nodeName, ...(v.iface ? { iface: v.iface } : {}),
    runDir: v['run-dir'] ?? '/run/knit', stateDir: v['state-dir'] ?? '/var/lib/knit', confDir: v['cni-conf-dir'] ?? '/etc/cni/net.d',
    ttlSec: posInt('lease-ttl', v['lease-ttl'], 300), resyncSec: posInt('resync-interval', v['resync-interval'], 60),
    ...(v['key-rotation-interval'] !== undefined ? { keyRotationSec: posInt('key-rotation-interval', v['key-rotation-interval'], 0, 0) } : {}),
    ...(v['metrics-addr'] ? { metricsAddr: v['metrics-addr'] } : {}),
    dns: { on: dnsOn(v.dns), resolvConf: v['dns-resolv-conf'] ?? '/etc/resolv.conf' },
  };
}

function dnsOn(v: string | undefined): boolean {
  if (v === undefined || v === 'on') return true;
  if (v === 'off') return false;
  throw new Error(`invalid --dns ${v}: on or off (knitd's resolver for named networks, docs/dns.md)`);
}

function etcdStore(f: OverlayFlags): import('../../pkg/datastore/datastore').Datastore {
  const { EtcdDatastore } = require('../../pkg/datastore/etcd-overlay') as typeof import('../../pkg/datastore/etcd-overlay');
  return new EtcdDatastore({
    endpoints: f.endpoints, prefix: f.prefix, ...(f.tls ? { tls: f.tls } : {}),
    ...(f.username ? { username: f.username } : {}), ...(f.password ? { password: f.password } : {}),
  });
}

function kubernetesStore(f: OverlayFlags, k: NonNullable<OverlayFlags['kubernetes']>, log: Logger): import('../../pkg/datastore/kubernetes').KubernetesDatastore {
  const { KubernetesDatastore } = require('../../pkg/datastore/kubernetes') as typeof import('../../pkg/datastore/kubernetes');
  return new KubernetesDatastore({
    nodeName: f.nodeName, ...(k.kubeconfig ? { kubeconfig: k.kubeconfig } : {}), netConf: k.netConf, resyncSec: f.resyncSec, log,
  });
}

/** Starts the agent in the background, retrying its start until it succeeds or knitd stops. */
export function startOverlay(f: OverlayFlags, parent: Logger): { stop(): void } {
  const { OverlayAgent } = require('../../pkg/agent/agent') as typeof import('../../pkg/agent/agent');
  const log = parent.child({ component: 'overlay' });
  const kube = f.kubernetes ? kubernetesStore(f, f.kubernetes, log) : undefined;
  const mesh = f.mesh ? (require('./mesh') as typeof import('./mesh')).startMesh(f, f.mesh, parent, f.meshIpamGc) : undefined;
  const store = kube ?? mesh?.store ?? etcdStore(f);
  let gc: import('../../pkg/agent/ipam-gc').IpamGc | undefined;
  const g = f.kubernetes?.ipamGc;
  if (kube && g && g.intervalSec > 0) {
    const { IpamGc } = require('../../pkg/agent/ipam-gc') as typeof import('../../pkg/agent/ipam-gc');
    gc = new IpamGc({ ...g, nodeName: f.nodeName, listPods: (n) => kube.listPods(n), log: parent.child({ component: 'ipam-gc' }) });
    gc.start();
  }
  const overlay = startRetrying(
    () => new OverlayAgent({ store, nodeName: f.nodeName, ...(f.iface ? { iface: f.iface } : {}), runDir: f.runDir, stateDir: f.stateDir, ttlSec: f.ttlSec, resyncSec: f.resyncSec, ...(f.keyRotationSec ? { keyRotationSec: f.keyRotationSec } : {}), log }),
    (a) => `overlay agent up: node ${f.nodeName}, subnet ${a.status.subnet}, ${a.status.backend}`, 'overlay agent', log);
  // Named networks on etcd or on the mesh (docs/mesh.md); not on the Kubernetes API.
  const networks = f.kubernetes ? undefined : startNetworks(f, parent, store, mesh);
  const resolver = networks?.resolver;
  let metrics: import('node:http').Server | undefined;
  if (f.metricsAddr) {
    const { serveMetrics } = require('../../pkg/agent/metrics') as typeof import('../../pkg/agent/metrics');
    serveMetrics(f.metricsAddr, {
      status: () => overlay.agent()?.status ?? null, resyncSec: f.resyncSec, ...(gc ? { ipamGc: () => gc!.stats } : mesh?.podGc ? { ipamGc: () => mesh.podGc!.stats } : {}),
      ...(networks?.services ? { services: () => networks.services!.status } : {}), ...(resolver ? { dns: () => resolver.stats() } : {}),
    }).then(
      (s) => { metrics = s; log.info(`metrics and health on http://${f.metricsAddr}/metrics, /healthz`); },
      (e: Error) => log.error(`metrics: ${e.message}`));
  }
  return {
    stop() {
      metrics?.close();
      overlay.stop();
      networks?.stop();
      gc?.stop();
      store.close();
      mesh?.stop();
    },
  };
}

/**
 * The named-network agent (pkg/agent/networks.ts) on etcd or on the mesh (`mesh`), retried
 * until it starts; independent of the pod network. Service VIPs on either (docs/services.md).
 */
function startNetworks(f: OverlayFlags, parent: Logger, store: import('../../pkg/datastore/datastore').Datastore, mesh?: import('./mesh').MeshHandles): { services?: import('../../pkg/agent/services').ServicesAgent; resolver?: import('../../pkg/dns/agent').Resolver; stop(): void } {
  const { NetworksAgent } = require('../../pkg/agent/networks') as typeof import('../../pkg/agent/networks');
  const log = parent.child({ component: 'networks' });
  const conn = {
    endpoints: f.endpoints, prefix: f.prefix, timeoutMs: 5000, ...(f.tls ? { tls: f.tls } : {}),
    ...(f.username ? { username: f.username } : {}), ...(f.password ? { password: f.password } : {}),
  };
  // Service VIPs (pkg/agent/services.ts) follow whichever networks agent is running.
  const { ServicesAgent } = require('../../pkg/agent/services') as typeof import('../../pkg/agent/services');
  const meshNode = mesh?.node;
  const source = mesh ? new (require('../../pkg/agent/services-mesh') as typeof import('../../pkg/agent/services-mesh')).MeshServicesSource(mesh.node, mesh.networks, mesh.ipam) : undefined;
  const services = new ServicesAgent({ ...(source ? { source } : { conn }), nodeName: f.nodeName, resyncSec: f.resyncSec, log: parent.child({ component: 'services' }) });
  void services?.start();
  // The resolver (and dns-packet with it) is loaded only when knitd runs the named networks.
  let resolver: import('../../pkg/dns/agent').Resolver | undefined;
  if (f.dns.on) {
    const { Resolver } = require('../../pkg/dns/agent') as typeof import('../../pkg/dns/agent');
    resolver = new Resolver({ ...(meshNode ? {} : { conn }), runDir: f.runDir, nodeName: f.nodeName, resolvConf: f.dns.resolvConf, log: parent.child({ component: 'dns' }) });
    resolver.start();
    // On the mesh the services' names come from the replica (on etcd the resolver watches them).
    if (meshNode) {
      const r = resolver;
      const names = (): void => r.table.resyncServices(meshNode.state.services());
      meshNode.onChange((c) => { if (c.kind === 'svc') names(); });
      void meshNode.ready(30_000).then(names, () => undefined);
    }
  }
  const agent = startRetrying(
    () => {
      const source = meshNode ? new (require('../../pkg/agent/networks-mesh') as typeof import('../../pkg/agent/networks-mesh')).MeshNetworksSource(meshNode, { nodeName: f.nodeName, runDir: f.runDir, log }) : undefined;
      const a = new NetworksAgent({
        ...(source ? { source } : { conn }), nodeName: f.nodeName, ...(f.iface ? { iface: f.iface } : {}), runDir: f.runDir, stateDir: f.stateDir, confDir: f.confDir, ttlSec: f.ttlSec, resyncSec: f.resyncSec,
        keyGeneration: store, ...(f.keyRotationSec ? { keyRotationSec: f.keyRotationSec } : {}), log,
      });
      services?.attach(a);
      if (resolver) a.subscribe(resolver.listener);
      return a;
    },
    (a) => `named networks up: node ${f.nodeName}, ${a.status.networks} network(s), conflists in ${f.confDir}`, 'named networks', log);
  return { services, ...(resolver ? { resolver } : {}), stop() { agent.stop(); services.stop(); resolver?.stop(); } };
}

/** Starts an agent in the background, retrying (1 s doubling to 30 s) until it starts or stop() is called. */
function startRetrying<A extends { start(): Promise<void>; stop(): void }>(make: () => A, up: (a: A) => string, what: string, log: Logger): { agent(): A | null; stop(): void } {
  let agent: A | null = null;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const attempt = (delay: number): void => {
    const a = (agent = make());
    a.start().then(() => log.info(up(a)), (e: Error) => {
      a.stop();
      if (stopped) return;
      log.error(`${what} cannot start: ${e.message}; retrying in ${delay / 1000} s`);
      timer = setTimeout(() => attempt(Math.min(delay * 2, 30_000)), delay);
    });
  };
  attempt(1000);
  return { agent: () => agent, stop() { stopped = true; if (timer) clearTimeout(timer); agent?.stop(); } };
}

/**
 * knitd without a datastore: the resolver for plain knit-bridge networks with `"resolver": true`
 * on this host only (their records under --run-dir), unless --dns off. The codec is loaded after
 * knitd serves CNI requests, not before.
 */
export function startLocalResolver(v: Record<string, string | undefined>, parent: Logger): { stop(): void } | undefined {
  if (!dnsOn(v.dns)) return undefined;
  const { Resolver } = require('../../pkg/dns/agent') as typeof import('../../pkg/dns/agent');
  const resolver = new Resolver({
    runDir: v['run-dir'] ?? '/run/knit', nodeName: os.hostname(), resolvConf: v['dns-resolv-conf'] ?? '/etc/resolv.conf', log: parent.child({ component: 'dns' }),
  });
  resolver.start();
  return resolver;
}
