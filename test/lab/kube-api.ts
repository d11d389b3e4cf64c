// A small Kubernetes API server for tests (docs/design.md D7): Nodes, and Pods to list, over plain
// HTTP (the client takes http:// only with insecure-skip-tls-verify, which kubeconfig() sets),
// enough for the real @kubernetes/client-node to list, get, watch and patch Nodes and to list Pods.
//   GET   /api/v1/nodes                  list (metadata.resourceVersion)
//   GET   /api/v1/nodes?watch=true&resourceVersion=N[&allowWatchBookmarks=true]
//         streamed JSON events ADDED/MODIFIED/DELETED/BOOKMARK; a resourceVersion older than the
//         kept history gets an ERROR event with code 410 (or an HTTP 410, see goneAsHttp)
//   GET   /api/v1/nodes/NAME             get
//   PATCH /api/v1/nodes/NAME             merge-patch / strategic-merge-patch (both as JSON merge patch)
//   GET   /api/v1/pods, /api/v1/namespaces/NS/pods
//         list, with fieldSelector spec.nodeName=X and limit/continue paging (the continue token
//         pins the list's resourceVersion, as the real server's does)
//   GET   /api/v1/namespaces/NS/configmaps/NAME   get
//   POST  /api/v1/namespaces/NS/configmaps        create (409 AlreadyExists when it exists)
//   PATCH /api/v1/namespaces/NS/configmaps/NAME   merge patch; a metadata.resourceVersion in it is a
//         precondition (409 Conflict when it differs), as on the real server
// resourceVersions are one counter over every change. Test hooks change nodes behind the clients'
// backs, compact the history (forcing 410), send bookmarks and cut watches.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface KNode {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; resourceVersion?: string; uid?: string; annotations?: Record<string, string>; labels?: Record<string, string>; [k: string]: unknown };
  spec?: { podCIDR?: string; podCIDRs?: string[]; [k: string]: unknown };
  status?: { addresses?: Array<{ type: string; address: string }>; [k: string]: unknown };
}

export interface KPod {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string; [k: string]: unknown };
  spec: { nodeName?: string; hostNetwork?: boolean; [k: string]: unknown };
  status: { phase?: string; podIP?: string; podIPs?: Array<{ ip: string }>; [k: string]: unknown };
}

export interface KConfigMap {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion?: string; uid?: string; [k: string]: unknown };
  data?: Record<string, string>;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';
interface Change { rv: number; type: EventType; object: KNode }
interface Watcher { res: http.ServerResponse; bookmarks: boolean }

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!patch || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

export class KubeApiServer {
  private readonly server: http.Server;
  private readonly nodes = new Map<string, KNode>();
  private history: Change[] = [];
  private rv = 100;
  /** The oldest resourceVersion a watch may start from (older: 410 Gone). */
  private minRv = 100;
  private readonly watchers = new Set<Watcher>();
  private uid = 0;
  private readonly pods = new Map<string, KPod>();
  private readonly configMaps = new Map<string, KConfigMap>();
  /** Pod lists in progress (limit/continue): the snapshot each continue token pages through. */
  private readonly pages = new Map<string, KPod[]>();
  /** Answer a too-old watch with HTTP 410 instead of a 200 with an ERROR event. */
  goneAsHttp = false;
  /** Every request, "METHOD path?query", for assertions. */
  readonly requests: string[] = [];
  url = '';

  constructor() {
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  async start(host = '127.0.0.1', port = 0): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    const a = this.server.address() as AddressInfo;
    this.url = `http://${a.address}:${a.port}`;
    return this.url;
  }

  /**
   * Listens on a unix socket instead: a path reaches across network namespaces without any link
   * in the test's own (root) namespace. A relay in a lab netns (relayToUnix) then serves it on TCP
   * there; `url` is the address clients in the lab use.
   */
  async startUnix(socketPath: string, url: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(socketPath, () => resolve());
    });
    this.url = url;
  }

  async close(): Promise<void> {
    this.closeWatches();
    this.server.closeAllConnections?.();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** A kubeconfig (YAML) pointing at this server. */
  kubeconfig(): string {
    return [
      'apiVersion: v1', 'kind: Config', 'current-context: test',
      'clusters:', '- name: test', '  cluster:', `    server: ${this.url}`, '    insecure-skip-tls-verify: true',
      'contexts:', '- name: test', '  context:', '    cluster: test', '    user: test',
      'users:', '- name: test', '  user:', '    token: test-token', '',
    ].join('\n');
  }

  get resourceVersion(): number { return this.rv; }
  get watchCount(): number { return this.watchers.size; }
  node(name: string): KNode | undefined { const n = this.nodes.get(name); return n && clone(n); }
  list(): KNode[] { return [...this.nodes.values()].map(clone); }

  // --- test hooks --------------------------------------------------------------------------

  addNode(name: string, o: { podCIDR?: string; annotations?: Record<string, string>; internalIP?: string } = {}): KNode {
    if (this.nodes.has(name)) throw new Error(`node ${name} exists`);
    const n: KNode = {
      apiVersion: 'v1', kind: 'Node',
      metadata: { name, uid: `uid-${++this.uid}`, ...(o.annotations ? { annotations: { ...o.annotations } } : {}) },
      spec: o.podCIDR ? { podCIDR: o.podCIDR, podCIDRs: [o.podCIDR] } : {},
      status: o.internalIP ? { addresses: [{ type: 'InternalIP', address: o.internalIP }] } : {},
    };
    return this.commit('ADDED', n);
  }

  modifyNode(name: string, fn: (n: KNode) => void): KNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    const c = clone(n);
    fn(c);
    return this.commit('MODIFIED', c);
  }

  setPodCIDR(name: string, cidr: string | undefined): KNode {
    return this.modifyNode(name, (n) => { n.spec = cidr ? { ...n.spec, podCIDR: cidr, podCIDRs: [cidr] } : {}; });
  }

  deleteNode(name: string): void {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    this.commit('DELETED', clone(n));
  }

  /** Forgets the history: every watch from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.history = [];
    this.minRv = this.rv;
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that asked for them. */
  bookmark(): void {
    for (const w of this.watchers) {
      if (w.bookmarks) this.send(w.res, { type: 'BOOKMARK', object: { kind: 'Node', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  /** Ends every open watch (as an API server does at its watch timeout). */
  closeWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  /** Sends the 410 ERROR event to every open watch and ends them (history compacted first). */
  expireWatches(): void {
    this.compact();
    for (const w of this.watchers) { this.send(w.res, goneEvent(this.minRv)); w.res.end(); }
    this.watchers.clear();
  }

  /** Adds a pod (status.podIPs empty until setPodIPs: pod status lags the CNI ADD). */
  addPod(namespace: string, name: string, o: { nodeName?: string; phase?: string; podIPs?: string[]; hostNetwork?: boolean } = {}): KPod {
    const key = `${namespace}/${name}`;
    if (this.pods.has(key)) throw new Error(`pod ${key} exists`);
    const p: KPod = {
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name, namespace, uid: `pod-uid-${++this.uid}` },
      spec: { ...(o.nodeName ? { nodeName: o.nodeName } : {}), ...(o.hostNetwork ? { hostNetwork: true } : {}) },
      status: { phase: o.phase ?? 'Pending' },
    };
    if (o.podIPs) setIPs(p, o.podIPs);
    return this.putPod(p);
  }

  /** What the kubelet writes once the sandbox has its addresses. */
  setPodIPs(namespace: string, name: string, ips: string[], phase = 'Running'): KPod {
    return this.modifyPod(namespace, name, (p) => { setIPs(p, ips); p.status.phase = phase; });
  }

  modifyPod(namespace: string, name: string, fn: (p: KPod) => void): KPod {
    const p = this.pods.get(`${namespace}/${name}`);
    if (!p) throw new Error(`no pod ${namespace}/${name}`);
    const c = clone(p);
    fn(c);
    return this.putPod(c);
  }

  deletePod(namespace: string, name: string): void {
    if (!this.pods.delete(`${namespace}/${name}`)) throw new Error(`no pod ${namespace}/${name}`);
    this.rv++;
  }

  configMap(namespace: string, name: string): KConfigMap | undefined { const c = this.configMaps.get(`${namespace}/${name}`); return c && clone(c); }

  pod(namespace: string, name: string): KPod | undefined { const p = this.pods.get(`${namespace}/${name}`); return p && clone(p); }

  private putPod(p: KPod): KPod {
    this.rv++;
    p.metadata.resourceVersion = String(this.rv);
    this.pods.set(`${p.metadata.namespace}/${p.metadata.name}`, p);
    return clone(p);
  }

  // --- the API ------------------------------------------------------------------------------

  private commit(type: EventType, n: KNode): KNode {
    this.rv++;
    n.metadata.resourceVersion = String(this.rv);
    if (type === 'DELETED') this.nodes.delete(n.metadata.name); else this.nodes.set(n.metadata.name, n);
    const ch: Change = { rv: this.rv, type, object: clone(n) };
    this.history.push(ch);
    for (const w of this.watchers) this.send(w.res, { type, object: ch.object });
    return clone(n);
  }

  private send(res: http.ServerResponse, ev: unknown): void {
    if (!res.writableEnded) res.write(`${JSON.stringify(ev)}\n`);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const u = new URL(req.url ?? '/', 'http://x');
    this.requests.push(`${req.method} ${u.pathname}${u.search}`);
    const json = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const status = (code: number, reason: string, message: string): void =>
      json(code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
    const pm = /^\/api\/v1\/(?:namespaces\/([^/]+)\/)?pods$/.exec(u.pathname);
    if (pm && req.method === 'GET') return this.listPods(u, pm[1] ? decodeURIComponent(pm[1]) : undefined, json, status);
    const cm = /^\/api\/v1\/namespaces\/([^/]+)\/configmaps(?:\/([^/]+))?$/.exec(u.pathname);
    if (cm) return this.configMapRequest(req, decodeURIComponent(cm[1]!), cm[2] ? decodeURIComponent(cm[2]) : undefined, json, status);
    const m = /^\/api\/v1\/nodes(?:\/([^/]+))?$/.exec(u.pathname);
    if (!m) return status(404, 'NotFound', `the server could not find the requested resource (${u.pathname})`);
    const name = m[1] ? decodeURIComponent(m[1]) : undefined;
    if (req.method === 'GET' && !name) {
      const watch = u.searchParams.get('watch');
      if (watch === 'true' || watch === '1') return this.watch(u, res);
      return json(200, { kind: 'NodeList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items: this.list() });
    }
    if (req.method === 'GET' && name) {
      const n = this.nodes.get(name);
      return n ? json(200, n) : status(404, 'NotFound', `nodes "${name}" not found`);
    }
    if (req.method === 'PATCH' && name) {
      const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      if (ct !== 'application/merge-patch+json' && ct !== 'application/strategic-merge-patch+json') {
        return status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got ${ct})`);
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const n = this.nodes.get(name);
        if (!n) return status(404, 'NotFound', `nodes "${name}" not found`);
        let patch: unknown;
        try { patch = JSON.parse(Buffer.concat(chunks).toString()); } catch (e) { return status(400, 'BadRequest', `invalid patch: ${(e as Error).message}`); }
        const p = patch as { metadata?: { resourceVersion?: string } };
        if (p?.metadata?.resourceVersion && p.metadata.resourceVersion !== n.metadata.resourceVersion) {
          return status(409, 'Conflict', `Operation cannot be fulfilled on nodes "${name}": the object has been modified`);
        }
        const next = mergePatch(n, patch) as KNode;
        next.metadata.name = name;
        return json(200, this.commit('MODIFIED', next));
      });
      return;
    }
    status(405, 'MethodNotAllowed', `${req.method} is not supported`);
  }

  private configMapRequest(req: http.IncomingMessage, ns: string, name: string | undefined, json: (code: number, body: unknown) => void,
    status: (code: number, reason: string, message: string) => void): void {
    const key = (n: string): string => `${ns}/${n}`;
    if (req.method === 'GET' && name) {
      const c = this.configMaps.get(key(name));
      return c ? json(200, c) : status(404, 'NotFound', `configmaps "${name}" not found`);
    }
    if ((req.method !== 'POST' || name) && (req.method !== 'PATCH' || !name)) return status(405, 'MethodNotAllowed', `${req.method} is not supported`);
    const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: unknown;
      try { body = JSON.parse(Buffer.concat(chunks).toString()); } catch (e) { return status(400, 'BadRequest', `invalid body: ${(e as Error).message}`); }
      if (req.method === 'POST') {
        const c = body as KConfigMap;
        const n = c?.metadata?.name;
        if (!n) return status(422, 'Invalid', 'metadata.name: Required value');
        if (this.configMaps.has(key(n))) return status(409, 'AlreadyExists', `configmaps "${n}" already exists`);
        this.rv++;
        const made: KConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', ...clone(c), metadata: { ...clone(c.metadata), name: n, namespace: ns, uid: `cm-uid-${++this.uid}`, resourceVersion: String(this.rv) } };
        this.configMaps.set(key(n), made);
        return json(201, made);
      }
      if (ct !== 'application/merge-patch+json' && ct !== 'application/strategic-merge-patch+json') return status(415, 'UnsupportedMediaType', `unknown patch format ${ct}`);
      const cur = this.configMaps.get(key(name!));
      if (!cur) return status(404, 'NotFound', `configmaps "${name}" not found`);
      const want = (body as { metadata?: { resourceVersion?: string } })?.metadata?.resourceVersion;
      if (want && want !== cur.metadata.resourceVersion) return status(409, 'Conflict', `Operation cannot be fulfilled on configmaps "${name}": the object has been modified; please apply your changes to the latest version and try again`);
      const next = mergePatch(cur, body) as KConfigMap;
      this.rv++;
      next.metadata = { ...next.metadata, name: name!, namespace: ns, resourceVersion: String(this.rv) };
      this.configMaps.set(key(name!), next);
      return json(200, next);
    });
  }

  private listPods(u: URL, namespace: string | undefined, json: (code: number, body: unknown) => void, status: (code: number, reason: string, message: string) => void): void {
    let items: KPod[];
    let rv = String(this.rv);
    const cont = u.searchParams.get('continue');
    if (cont) {
      const snap = this.pages.get(cont);
      if (!snap) return status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.');
      this.pages.delete(cont);
      items = snap;
      rv = cont.split(':')[0]!;
    } else {
      const sel = u.searchParams.get('fieldSelector') ?? '';
      const conds: Array<[string, string]> = [];
      for (const term of sel.split(',').filter(Boolean)) {
        const eq = /^([a-zA-Z.]+)==?(.*)$/.exec(term);
        if (!eq || !['spec.nodeName', 'metadata.namespace', 'metadata.name'].includes(eq[1]!)) {
          return status(400, 'BadRequest', `"${term}" is not a known field selector: only "spec.nodeName", "metadata.namespace", "metadata.name"`);
        }
        conds.push([eq[1]!, eq[2]!]);
      }
      const field = (p: KPod, f: string): string => (f === 'spec.nodeName' ? p.spec.nodeName ?? '' : f === 'metadata.namespace' ? p.metadata.namespace : p.metadata.name);
      items = [...this.pods.values()]
        .filter((p) => (namespace === undefined || p.metadata.namespace === namespace) && conds.every(([f, v]) => field(p, f) === v))
        .sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`))
        .map(clone);
    }
    const limit = Number(u.searchParams.get('limit') ?? '0');
    const metadata: Record<string, string> = { resourceVersion: rv };
    if (limit > 0 && items.length > limit) {
      const token = `${rv}:${++this.uid}`;
      this.pages.set(token, items.slice(limit));
      items = items.slice(0, limit);
      metadata.continue = token;
    }
    json(200, { kind: 'PodList', apiVersion: 'v1', metadata, items });
  }

  private watch(u: URL, res: http.ServerResponse): void {
    const rvParam = u.searchParams.get('resourceVersion') ?? '';
    const from = rvParam === '' || rvParam === '0' ? null : Number(rvParam);
    if (from !== null && (!Number.isInteger(from) || from < this.minRv)) {
      if (this.goneAsHttp) {
        res.writeHead(410, { 'content-type': 'application/json' });
        res.end(JSON.stringify(goneEvent(this.minRv).object));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      this.send(res, goneEvent(this.minRv));
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    if (from === null) {
      for (const n of this.nodes.values()) this.send(res, { type: 'ADDED', object: n });
    } else {
      for (const c of this.history) if (c.rv > from) this.send(res, { type: c.type, object: c.object });
    }
    const w: Watcher = { res, bookmarks: u.searchParams.get('allowWatchBookmarks') === 'true' };
    this.watchers.add(w);
    res.on('close', () => this.watchers.delete(w));
  }
}

function setIPs(p: KPod, ips: string[]): void {
  if (ips.length) p.status.podIP = ips[0]; else delete p.status.podIP;
  p.status.podIPs = ips.map((ip) => ({ ip }));
}

function goneEvent(minRv: number): { type: 'ERROR'; object: Record<string, unknown> } {
  return {
    type: 'ERROR',
    object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version (oldest kept ${minRv})`, reason: 'Expired', code: 410 },
  };
}

/**
 * A TCP→unix-socket relay running inside a lab netns (a node process started with ip netns exec):
 * lab hosts reach `addr:port` there; every connection is piped to the socket. The caller's Lab
 * kills it with the namespace.
 */
export function relayToUnix(nsName: string, addr: string, port: number, socketPath: string): import('node:child_process').ChildProcess {
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const code = `const net=require('net');net.createServer((c)=>{const u=net.connect(${JSON.stringify(socketPath)});c.pipe(u);u.pipe(c);` +
    `c.on('error',()=>u.destroy());u.on('error',()=>c.destroy());}).listen(${port},${JSON.stringify(addr)},()=>console.log('relaying'));`;
  return spawn('ip', ['netns', 'exec', nsName, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '', NODE_OPTIONS: '' } });
}
