// knitd --datastore mesh (docs/mesh.md): the mesh node (pkg/mesh/node.ts) under the overlay
// agent's datastore, and the local control socket knitctl uses in mesh mode (<run-dir>/mesh.sock:
// status peers/connections, the pod network's config, leases, node rm, networks, services, ipam).
//   --peers HOST[:PORT][,HOST...]   members to dial first (a node knows the rest through them)
//   --mesh-listen ADDR:PORT         default 0.0.0.0:6788
//   --mesh-password SECRET | --mesh-password-file FILE | $KNIT_MESH_PASSWORD   required
//   --mesh-full-size N              live members up to which every pair connects (64)
//   --mesh-fanout N                 above that, members each node chooses (8; topology.ts)
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Server } from 'node:net';
import type { Logger } from '../../pkg/cni/log';
import { parseNetworkConfig } from '../../pkg/agent/network-config';
import { MeshDatastore } from '../../pkg/datastore/mesh';
import { serveControl } from '../../pkg/mesh/control';
import { ipamListing, MeshIpam } from '../../pkg/mesh/ipam';
import { MeshNetworks } from '../../pkg/mesh/networks';
import { MeshServices } from '../../pkg/mesh/services';
import { svcKey } from '../../pkg/mesh/state';
import { meshGcPass, MeshIpamGc, MeshStaleTracker, type MeshGcTarget } from '../../pkg/agent/ipam-gc';
import type { ServiceRequest } from '../../pkg/service/spec';
import type { Owner } from '../../pkg/ipam/store';
import type { CreateRequest } from '../../pkg/network/spec';
import type { Endpoint, EndpointId } from '../../pkg/network/store';
import { DEFAULT_MESH_PORT, joinHostPort, MeshNode, parseHostPort } from '../../pkg/mesh/node';
import { DEFAULT_FANOUT, DEFAULT_FULL_MESH } from '../../pkg/mesh/topology';
import { meshStatus } from '../../pkg/mesh/status';

/** What the mesh takes from knitd's common flags (overlay.ts). */
interface NodeFlags { nodeName: string; stateDir: string; runDir: string; ttlSec: number }

export interface MeshFlags {
  peers: string[];
  listen: { host: string; port: number };
  secret: Buffer;
  /** --mesh-fanout: members each node chooses above the full-mesh size (topology.ts); absent: DEFAULT_FANOUT. */
  fanout?: number;
  /** --mesh-full-size: live members up to which every pair is connected; absent: DEFAULT_FULL_MESH. */
  fullMesh?: number;
}

/**
 * The topology flags' ranges. Fanout: at least 1 (a ring plus one chord per node); above 64 a
 * node's degree nears the full mesh's anyway. Full size: from 2 (sparse as soon as fanout + 1
 * members are exceeded) to 1,000 (a full mesh of 1,000 is half a million connections).
 */
export const MESH_FANOUT_RANGE = { min: 1, max: 64 } as const;
export const MESH_FULL_SIZE_RANGE = { min: 2, max: 1000 } as const;

function intFlag(flag: string, v: string | undefined, dflt: number, r: { min: number; max: number }, what: string): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < r.min || n > r.max) throw new Error(`invalid --${flag} ${JSON.stringify(v)}: ${what}, an integer from ${r.min} to ${r.max} (default ${dflt})`);
  return n;
}

/** The mesh flags, checked; every error names its flag. */
export function meshFlags(v: Record<string, string | undefined>, env: NodeJS.ProcessEnv): MeshFlags {
  const peers = (v.peers ?? '').split(',').map((s) => s.trim()).filter(Boolean).map((p) => {
    try { const hp = parseHostPort(p); return joinHostPort(hp.host, hp.port); } catch (e) { throw new Error(`invalid --peers ${(e as Error).message}`); }
  });
  let listen: { host: string; port: number };
  try { listen = parseHostPort(v['mesh-listen'] ?? `0.0.0.0:${DEFAULT_MESH_PORT}`); } catch (e) { throw new Error(`invalid --mesh-listen ${(e as Error).message}`); }
  if (v['mesh-password'] !== undefined && v['mesh-password-file'] !== undefined) throw new Error('--mesh-password and --mesh-password-file: give one of them');
  let secret: string;
  if (v['mesh-password-file'] !== undefined) {
    try { secret = fs.readFileSync(v['mesh-password-file'], 'utf8').replace(/\r?\n$/, ''); } catch (e) { throw new Error(`invalid --mesh-password-file ${v['mesh-password-file']}: ${(e as Error).message}`); }
    if (!secret) throw new Error(`invalid --mesh-password-file ${v['mesh-password-file']}: the file is empty`);
  } else {
    const pw = v['mesh-password'] ?? env.KNIT_MESH_PASSWORD;
    if (pw === undefined) throw new Error('--datastore mesh needs --mesh-password SECRET or --mesh-password-file FILE (or $KNIT_MESH_PASSWORD): every node of the mesh shares it');
    if (!pw) throw new Error('invalid --mesh-password "": an empty secret');
    secret = pw;
  }
  // Absent: left out, so the node's defaults (topology.ts) apply.
  const fanout = intFlag('mesh-fanout', v['mesh-fanout'], DEFAULT_FANOUT, MESH_FANOUT_RANGE, 'the members each node connects to above --mesh-full-size');
  const fullMesh = intFlag('mesh-full-size', v['mesh-full-size'], DEFAULT_FULL_MESH, MESH_FULL_SIZE_RANGE, 'the live members up to which every pair connects');
  return {
    peers, listen, secret: Buffer.from(secret, 'utf8'),
    ...(v['mesh-fanout'] !== undefined ? { fanout } : {}), ...(v['mesh-full-size'] !== undefined ? { fullMesh } : {}),
  };
}

/** Starts the mesh node and the control socket; the store is usable at once (its calls wait for the first sync). */
/** The mesh's parts knitd's other agents use (the services agent, the pod GC). */
export interface MeshHandles { store: MeshDatastore; node: MeshNode; networks: MeshNetworks; ipam: MeshIpam; services: MeshServices; gcTarget: MeshGcTarget; podGc?: MeshIpamGc }

export function startMesh(f: NodeFlags, m: MeshFlags, parent: Logger, gc?: { intervalSec: number; graceSec: number }): MeshHandles & { stop(): void } {
  const log = parent.child({ component: 'mesh' });
  const node = new MeshNode({ name: f.nodeName, secret: m.secret, listen: m.listen, peers: m.peers, stateDir: path.join(f.stateDir, 'mesh'), ttlSec: f.ttlSec, log, ...(m.fanout ? { fanout: m.fanout } : {}), ...(m.fullMesh ? { fullMesh: m.fullMesh } : {}) });
  const store = new MeshDatastore(node);
  const networks = new MeshNetworks(node);
  const ipam = new MeshIpam(node, path.join(f.stateDir, 'mesh'));
  const services = new MeshServices(node, ipam);
  const gcTarget: MeshGcTarget = {
    attachments: () => ipam.attachments(),
    release: (n, o) => ipam.release(n, o),
    driverOf: (n) => node.state.nets.get(n)?.net?.driver,
    dropEndpoint: (n, o) => networks.deleteEndpoint({ network: n, node: f.nodeName, containerId: o.containerId, ifName: o.ifName }),
  };
  // The pod GC of this node's addresses (pkg/agent/ipam-gc.ts: attachments whose host link is gone).
  const podGc = gc && gc.intervalSec > 0 ? new MeshIpamGc({ target: gcTarget, ...gc, log: parent.child({ component: 'ipam-gc' }) }) : undefined;
  podGc?.start();
  const h: MeshHandles = { store, node, networks, ipam, services, gcTarget, ...(podGc ? { podGc } : {}) };
  let control: Server | undefined;
  node.start().then(async () => {
    // A VIP reservation whose service went while this knitd was down: freed once the state is in.
    void node.ready(30_000).then(() => services.reconcile()).catch(() => undefined);
    control = await serveControl(f.runDir, (req) => handle(h, f, req));
    log.info(`mesh control socket at ${path.join(f.runDir, 'mesh.sock')}`);
  }).catch((e: Error) => {
    log.error(`mesh: cannot listen on ${joinHostPort(m.listen.host, m.listen.port)} (--mesh-listen): ${e.message}`);
    process.exit(1);
  });
  return { ...h, stop() { podGc?.stop(); control?.close(); node.stop(); } };
}

/** What knitctl asks the local knitd in mesh mode. */
async function handle(h: MeshHandles, f: NodeFlags, req: Record<string, unknown>): Promise<unknown> {
  const { node, store, networks: nets, ipam, services } = h;
  const owner = (): Owner => { const o = req.owner as Owner; return { containerId: String(o?.containerId), ifName: String(o?.ifName) }; };
  switch (req.op) {
    // Addresses of named networks (pkg/mesh/ipam.ts): knit-mesh-ipam's verbs.
    case 'ipam-add':
      await node.ready(10_000);
      return ipam.allocate(String(req.network), owner(), Array.isArray(req.requests) ? req.requests.map(String) : []);
    case 'ipam-del':
      return ipam.release(String(req.network), owner());
    case 'ipam-check':
      return ipam.check(String(req.network), owner());
    case 'ipam-gc':
      return ipam.gc(String(req.network), Array.isArray(req.valid) ? (req.valid as Owner[]) : []);
    case 'ipam-ls':
      return ipam.summary();
    // knitctl ipam ls|gc (docs/mesh.md): every node's blocks and attachments as published; this node's GC.
    case 'ipam-view':
      await node.ready(10_000);
      return ipamListing(node, typeof req.network === 'string' ? req.network : undefined);
    case 'ipam-gc-local': {
      const graceSec = Number(req.graceSec ?? 30);
      const network = typeof req.network === 'string' ? req.network : undefined;
      const tracker = new MeshStaleTracker(graceSec * 1000);
      const t0 = Date.now();
      const first = await meshGcPass(h.gcTarget, tracker, { ...(network ? { network } : {}), now: t0, dryRun: true });
      if (!first.judged.some((j) => j.stale)) return { judged: first.judged, released: [] };
      await new Promise((r) => setTimeout(r, graceSec * 1000));
      const second = await meshGcPass(h.gcTarget, tracker, { ...(network ? { network } : {}), now: t0 + graceSec * 1000, dryRun: !!req.dryRun });
      return { judged: second.judged, released: second.confirmed };
    }
    // Services (pkg/mesh/services.ts): knitctl service ...
    case 'svc-ls':
      return services.list(typeof req.network === 'string' ? req.network : undefined);
    case 'svc-find':
      return services.find(String(req.name), typeof req.network === 'string' ? req.network : undefined);
    case 'svc-get':
      return node.state.svcs.get(svcKey(String(req.network), String(req.name)))?.svc ?? null;
    case 'svc-create':
      return services.create(req.req as ServiceRequest);
    case 'svc-rm':
      await services.remove(String(req.network), String(req.name));
      return null;
    // Named networks (pkg/mesh/networks.ts): knitctl network ..., knit-l2overlay's endpoints.
    case 'net-ls':
      return nets.list();
    case 'net-get':
      return nets.get(String(req.name));
    case 'net-create':
      return nets.create(req.req as CreateRequest);
    case 'net-rm':
      await nets.remove(String(req.name));
      return null;
    case 'ep-ls':
      return nets.endpoints(typeof req.network === 'string' ? req.network : undefined);
    case 'ep-put':
      nets.putEndpoint(req.ep as Endpoint);
      return null;
    case 'ep-del':
      nets.deleteEndpoint(req.id as EndpointId);
      return null;
    case 'status':
      return meshStatus(node);
    case 'config-get':
      return node.state.config?.json ?? null;
    case 'config-set': {
      const cfg = parseNetworkConfig(String(req.json));
      await store.putNetworkConfig(JSON.stringify(cfg));
      return JSON.stringify(cfg);
    }
    // The encrypted overlay's key generation (knitctl key show/rotate).
    case 'keygen-get':
      return store.getKeyGeneration();
    case 'keygen-bump':
      return store.bumpKeyGeneration(req.expect === null || req.expect === undefined ? null : Number(req.expect));
    case 'leases':
      return (await store.listLeases()).leases;
    case 'node-rm': {
      const name = String(req.name);
      const now = Date.now();
      if (name === f.nodeName || (node.state.live(name, now) && !req.force)) {
        throw new Error(`node ${name} is alive (heard from ${name === f.nodeName ? 'now: it is this node' : `${Math.round((now - (node.state.heard.get(name) ?? now)) / 1000)} s ago`}): stop its knitd first; node rm releases the subnet of a node gone for good`);
      }
      if (!node.state.nodes.has(name)) {
        if (node.state.rms.has(name)) return { released: 0, already: true };
        throw new Error(`no node ${name} in the mesh (members: ${node.state.members().join(', ')})`);
      }
      return { released: await store.releaseNode(name), already: false };
    }
    default:
      throw new Error(`unknown request ${JSON.stringify(req.op)}`);
  }
}
