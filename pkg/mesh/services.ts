// Services on the mesh (docs/services.md "On the mesh", design D22): what etcd's ServiceStore
// does, with no etcd. A service is a replicated record (state.ts `svc`) written only after its
// claim (grants.ts `vip`: its name and VIP on the network) won a majority's votes, so two services
// with one name or one VIP on a network never both exist, not even across a partition.
// `service rm` writes a tombstone; every voter then drops the claim.
//
// The VIP must never go to a container either: it is reserved in the creating node's own address
// blocks (pkg/mesh/ipam.ts, owner vip-<name>.<id12>), which no other node hands out from. A --vip
// outside the network's ip-range needs no reservation (no node hands such an address out); one in
// a block held by another node is refused, naming that node. The node holding a VIP's reservation
// frees it when the service's tombstone reaches it (reconcile).
import { randomBytes } from 'node:crypto';
import { CniError } from '../cni/errors';
import { formatIP } from '../ip/ip';
import { SpecError } from '../network/spec';
import { checkServiceName, checkServiceNetwork, checkVip, parsePorts, servicesNamed, type Service, type ServiceRequest } from '../service/spec';
import { holderText, vipOwner } from '../service/owners';
import type { MeshIpam } from './ipam';
import { NoQuorumError, type MeshNode } from './node';
import { svcKey } from './state';

const READY_MS = 10_000;

export class MeshServices {
  /** Services being created here: their VIP reservation is not stale yet. */
  private readonly creating = new Set<string>();

  constructor(readonly node: MeshNode, private readonly ipam: MeshIpam, private readonly joinWaitMs = READY_MS) {
    // A tombstone (from any node) frees this node's reservation of the VIP.
    node.onChange((c) => { if (c.kind === 'svc' || c.kind === 'net') void this.reconcile(); });
  }

  private get self(): string { return this.node.state.self; }

  async list(network?: string): Promise<Service[]> {
    await this.node.ready(READY_MS);
    return this.node.state.services().filter((s) => !network || s.network === network);
  }

  /** Services named `name` (on any network, or on `network`); SpecError when there is none. */
  async find(name: string, network?: string): Promise<Service[]> {
    return servicesNamed(await this.list(network), name, network);
  }

  /** Validates (spec.ts: the messages are etcd's), reserves the VIP, wins the claim's votes, then stores. */
  async create(req: ServiceRequest, now = new Date()): Promise<Service> {
    checkServiceName(req.name);
    const ports = parsePorts(req.ports ?? []);
    await this.node.ready(READY_MS);
    const net = checkServiceNetwork(this.node.state.nets.get(req.network)?.net ?? null, req.network);
    const existing = this.node.state.services().filter((s) => s.network === net.name);
    if (existing.some((s) => s.name === req.name)) throw exists(req.name, net.name);
    const requested = req.vip !== undefined ? checkVip(req.vip, net, existing) : undefined;
    const id = randomBytes(32).toString('hex');
    const owner = vipOwner(req.name, id);
    this.creating.add(id);
    try {
      let vip: string;
      let reserved = false;
      if (requested) {
        vip = formatIP(requested);
        const holder = this.holderOf(net.name, vip);
        if (holder) throw badVip(vip, `${holder} holds it`);
        if (this.ipam.inRanges(net.name, vip)) {
          await this.reserve(net.name, owner, vip);
          reserved = true;
        }
      } else {
        vip = await this.reserve(net.name, owner);
        reserved = true;
      }
      let r;
      try {
        r = await this.node.vote({ kind: 'vip', svc: { id, netId: net.id, network: net.name, name: req.name, vip } }, this.node.version(), this.joinWaitMs);
      } catch (e) {
        if (reserved) await this.ipam.release(net.name, owner);
        throw e;
      }
      if (!r.ok) {
        if (reserved) await this.ipam.release(net.name, owner);
        const c = r.conflict ?? '';
        if (/same name/.test(c)) throw exists(req.name, net.name);
        const m = /^service (\S+) on network \S+: same VIP/.exec(c);
        if (m) throw badVip(vip, `an address no other service has (service ${m[1]} has it)`, true);
        throw new SpecError(`service ${req.name} on network ${net.name}: refused by the mesh's majority (${c || `a claim held by ${r.holder}`}); knitctl service ls, then try again`);
      }
      const svc: Service = { name: req.name, network: net.name, vips: [vip], ports, id, created: now.toISOString() };
      this.node.putNetworkRecord({ k: 'svc', name: svc.name, network: svc.network, id, v: this.node.version(), by: this.self, svc });
      return svc;
    } finally {
      this.creating.delete(id);
    }
  }

  /** A tombstone; the VIP's reservation goes on the node that holds it, the claim on every voter. */
  async remove(network: string, name: string): Promise<void> {
    await this.node.ready(READY_MS);
    const rec = this.node.state.svcs.get(svcKey(network, name));
    if (!rec?.svc) throw new SpecError(`no service named ${name} on network ${network} (knitctl service ls lists them)`);
    this.node.putNetworkRecord({ k: 'svc', name, network, id: rec.id, v: Math.max(this.node.version(), rec.v + 1), by: this.self, svc: null });
  }

  /** Frees this node's VIP reservations whose service no longer exists (removed anywhere, or never stored: a create that died). */
  async reconcile(): Promise<string[]> {
    const live = new Set(this.node.state.services().map((s) => `${s.network}\0${vipOwner(s.name, s.id).containerId}`));
    const freed: string[] = [];
    for (const a of this.ipam.attachments()) {
      if (a.owner.ifName !== 'vip' || !a.owner.containerId.startsWith('vip-') || live.has(`${a.network}\0${a.owner.containerId}`)) continue;
      if ([...this.creating].some((id) => a.owner.containerId.endsWith(`.${id.slice(0, 12)}`))) continue;
      freed.push(...(await this.ipam.release(a.network, a.owner)));
    }
    return freed;
  }

  /** Who holds `ip` on the network, as the nodes publish their addresses (null: nobody). */
  private holderOf(network: string, ip: string): string | null {
    for (const n of this.node.state.nodes.values()) {
      for (const [k, ips] of Object.entries(n.ipam?.[network]?.ips ?? {})) {
        if (!ips.includes(ip)) continue;
        const i = k.lastIndexOf(':');
        return holderText({ containerId: k.slice(0, i), ifName: k.slice(i + 1) }, n.name);
      }
    }
    return null;
  }

  /** The VIP reserved in this node's blocks (`ip`: that address); IPAM errors as --vip errors. */
  private async reserve(network: string, owner: ReturnType<typeof vipOwner>, ip?: string): Promise<string> {
    try {
      const [a] = await this.ipam.allocate(network, owner, ip ? [ip] : [], true);
      return a!.ip;
    } catch (e) {
      if (e instanceof CniError && e.code === 11) throw new NoQuorumError(e.message);
      if (!(e instanceof CniError)) throw e;
      if (!ip) throw new SpecError(`network ${network}: no address for the VIP: ${e.message}`);
      const held = /held by node (\S+?):/.exec(e.message);
      throw badVip(ip, held ? `an address in a block of this node or of no node (it is in a block of node ${held[1]}: run knitctl service create on ${held[1]}, or pick another address)` : `an address not in use (${e.message})`, true);
    }
  }
}

const exists = (name: string, network: string): SpecError =>
  new SpecError(`service ${name} already exists on network ${network}: pick another name or remove it first (knitctl service rm ${name})`);

const badVip = (vip: string, why: string, whole = false): SpecError =>
  new SpecError(`invalid --vip ${JSON.stringify(vip)}: ${whole ? why : `an address not in use (${why})`}`);
