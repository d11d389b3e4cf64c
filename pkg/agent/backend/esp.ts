// The encrypted overlay's IPsec half (docs/encryption.md): ESP in transport mode between this
// node's underlay address and each peer's, for the VXLAN UDP traffic of one port only.
//   policy out  <local> -> any      udp dport P   BLOCK                 (nothing leaves in clear)
//   policy out  <local> -> <peer>   udp dport P   ESP reqid(gen)        (one per keyed peer)
//   policy in   any -> <local>      udp dport P   ESP (any knit SA)     (clear VXLAN is dropped)
//   state  <local> -> <peer> spi S(gen, local->peer)   rfc4106(gcm(aes)), reqid(gen)
//   state  <peer> -> <local> spi S(gen, peer->local)   one per generation still in use
// Rotation (generation g -> g+1), make before break: the inbound SA of g+1 is installed as soon
// as this node knows g+1, and published (encGen); the outbound policy of a pair moves to g+1 only
// when the peer publishes g+1 too (it then has its inbound SA); an inbound SA no longer wanted is
// kept until a newer SA from the same peer has carried traffic (the peer switched) or a grace
// period passed. Owned objects: states with a knit reqid, policies with knit's two priorities.
import type { Logger } from '../../cni/log';
import { CniError, Code } from '../../cni/errors';
import {
  IPPROTO_UDP, Netlink, XFRM_POLICY_ALLOW, XFRM_POLICY_BLOCK, XFRM_POLICY_IN, XFRM_POLICY_OUT, isNotFound, openXfrm, xfrmPolicyDel,
  xfrmPolicyList, xfrmPolicyUpdate, xfrmStateAdd, xfrmStateDel, xfrmStateList, isExist, type XfrmPolicySpec, type XfrmState,
} from '../../netlink';
import {
  DEFAULT_ESP_CIPHER, ESP_CIPHERS, ESP_ICV_BITS, KNIT_REQID_BASE, directionalSa, isKnitReqid, isPublicKey, pairSecret, reqidFor, type EspCipherName, type NodeKey,
} from './esp-keys';
import { CHACHA_VXLAN_PORT, ENCRYPTED_VXLAN_PORT } from '../../network/datapath';

export const KNIT_XFRM_PRIORITY = 0x6b6e;
export const KNIT_XFRM_BLOCK_PRIORITY = 0x6b6f;

/**
 * Which of knit's ESP datapaths an EspDatapath is: each owns its policies (by priority; the block
 * policy is priority + 1) and its SAs (by reqid base), and derives its own SPIs and keys from
 * the pair secret, so the pod network's and the named networks' can share a node, a peer and a
 * generation without touching each other's objects.
 */
export interface EspDomain {
  /** In logs and in the key derivation ('' for the pod network: its SAs predate domains). */
  label: string;
  priority: number;
  reqidBase: number;
}
export const POD_NETWORK_ESP: EspDomain = { label: '', priority: KNIT_XFRM_PRIORITY, reqidBase: KNIT_REQID_BASE };
export const NAMED_NETWORKS_ESP: EspDomain = { label: 'named', priority: 0x6b70, reqidBase: 0x6b700000 };
/** A named networks' ESP domain and the VXLAN port its policies select. */
export interface NamedEspDomain extends EspDomain { port: number }
/**
 * Encrypted named networks, one domain per cipher (the network's -o cipher): networks of both
 * ciphers coexist on a node, each cipher's VXLAN on its own port under its own policies and SAs;
 * both ends agree because the cipher is part of the network every node sees. AES-GCM's is the
 * domain of before ciphers were a choice (its SAs, SPIs and port unchanged).
 */
export const NAMED_NETWORKS_ESP_BY_CIPHER: Readonly<Record<EspCipherName, NamedEspDomain>> = {
  'aes-gcm': { ...NAMED_NETWORKS_ESP, port: ENCRYPTED_VXLAN_PORT },
  'chacha20-poly1305': { label: 'named-chacha', priority: 0x6b72, reqidBase: 0x6b720000, port: CHACHA_VXLAN_PORT },
};
/** How long an inbound SA no longer wanted is kept when nothing shows the peer has moved on. */
export const DEFAULT_RETIRE_GRACE_MS = 60_000;

export interface EspPeer {
  nodeName: string;
  underlayAddr: string;
  /** The peer's X25519 public key (its encKey); absent: traffic to it stays blocked. */
  publicKey?: string;
  /** The highest generation the peer accepts (its encGen). */
  generation: number;
}

export interface EspSyncResult {
  /** Peers with an outbound SA, and the generation it uses. */
  keyed: Array<{ nodeName: string; txGeneration: number }>;
  /** Peers traffic to which stays blocked, with why. */
  blocked: Array<{ nodeName: string; reason: string }>;
  added: number;
  removed: number;
}

const sameSel = (a: XfrmPolicySpec['sel'], b: XfrmPolicySpec['sel']): boolean =>
  a.src === b.src && a.dst === b.dst && (a.srcPrefix ?? (a.src ? 32 : 0)) === (b.srcPrefix ?? (b.src ? 32 : 0)) &&
  (a.dstPrefix ?? (a.dst ? 32 : 0)) === (b.dstPrefix ?? (b.dst ? 32 : 0)) && a.proto === b.proto && a.dport === b.dport && a.sport === b.sport;

const stateId = (dst: string, spi: number): string => `${dst} ${spi}`;

interface WantState { src: string; dst: string; spi: number; reqid: number; key: Buffer; inbound: boolean }

/**
 * Why this kernel cannot do knit's ESP, as the kernel features missing; [] when it can. Probes
 * in the namespace itself: adds and removes a scratch SA with the AEAD (TEST-NET addresses).
 */
export function probeEsp(netns?: string | null, cipher: EspCipherName = DEFAULT_ESP_CIPHER): string[] {
  const c = ESP_CIPHERS[cipher];
  let nl: Netlink;
  try {
    nl = openXfrm(netns);
  } catch (e) {
    return [`xfrm netlink (CONFIG_XFRM_USER, module xfrm_user): ${(e as Error).message}`];
  }
  try {
    const spi = 0x100 + Math.floor(Math.random() * 0xfff0000);
    const s = { src: '192.0.2.1', dst: '192.0.2.2', spi, reqid: 0, aead: c.aead, key: Buffer.alloc(c.keyBytes, 1), icvBits: ESP_ICV_BITS };
    try {
      xfrmStateAdd(nl, s);
    } catch (e) {
      const code = (e as { code?: string }).code;
      const msg = (e as Error).message;
      if (code === 'ENOSYS' || /AEAD|algorithm/i.test(msg)) return [`AEAD ${c.aead} (${c.features}): ${msg}`, 'ESP (CONFIG_INET_ESP, module esp4): not verified'];
      if (code === 'EPROTONOSUPPORT') return [`ESP (CONFIG_INET_ESP, module esp4): ${msg}`];
      return [`an ESP state with ${c.aead}: ${msg}`];
    }
    try { xfrmStateDel(nl, s); } catch { /* gone already */ }
    return [];
  } finally {
    nl.close();
  }
}

/** The CNI error of a node asked to encrypt on a kernel that cannot: code 101, the features named. */
export function espUnavailable(missing: string[], what = 'encrypted VXLAN'): CniError {
  return new CniError(Code.KernelFeatureMissing, `${what} needs kernel features this node lacks: ${missing.join('; ')}; refusing to send it in plain text`);
}

export class EspDatapath {
  private readonly nl: Netlink;
  private gen = 0;
  /** When an owned inbound SA stopped being wanted, by stateId. */
  private readonly retiring = new Map<string, number>();
  private local?: string;

  constructor(private readonly key: NodeKey, private readonly port: number, netns?: string | null, private readonly log?: Logger, private readonly graceMs = DEFAULT_RETIRE_GRACE_MS,
    private readonly cipher: EspCipherName = DEFAULT_ESP_CIPHER, private readonly domain: EspDomain = POD_NETWORK_ESP) {
    this.nl = openXfrm(netns);
  }

  private get prio(): number { return this.domain.priority; }
  private get blockPrio(): number { return this.domain.priority + 1; }
  private reqid(g: number): number { return reqidFor(g, this.domain.reqidBase); }
  private owned(reqid: number): boolean { return isKnitReqid(reqid, this.domain.reqidBase); }
  private get tag(): string { return this.domain.label ? `esp ${this.domain.label}` : 'esp'; }

  get generation(): number { return this.gen; }

  /** Moves to generation g (never back: a lower value is ignored). The next sync acts on it. */
  setGeneration(g: number): void {
    if (Number.isInteger(g) && g > this.gen) this.gen = g;
  }

  private basePolicies(local: string): XfrmPolicySpec[] {
    return [
      { sel: { src: local, proto: IPPROTO_UDP, dport: this.port }, dir: XFRM_POLICY_OUT, priority: this.blockPrio, action: XFRM_POLICY_BLOCK },
      { sel: { dst: local, proto: IPPROTO_UDP, dport: this.port }, dir: XFRM_POLICY_IN, priority: this.prio, action: XFRM_POLICY_ALLOW, tmpl: { reqid: 0 } },
    ];
  }

  /** The catch-all policies (block out, ESP-only in): before the VXLAN device exists. */
  ensureBase(local: string): void {
    if (this.local && this.local !== local) this.removeAll();
    this.local = local;
    for (const p of this.basePolicies(local)) xfrmPolicyUpdate(this.nl, p);
  }

  sync(peers: EspPeer[], now = Date.now()): EspSyncResult {
    const local = this.local;
    if (!local) throw new Error('esp: sync before ensureBase');
    const res: EspSyncResult = { keyed: [], blocked: [], added: 0, removed: 0 };
    const want = new Map<string, WantState>();
    const policies: XfrmPolicySpec[] = this.basePolicies(local);
    /** Inbound SAs from each peer address that must stay (the current ones). */
    const wantIn = new Map<string, Set<string>>();
    try {
      for (const p of peers) {
        if (p.underlayAddr === local) continue;
        if (!isPublicKey(p.publicKey)) { res.blocked.push({ nodeName: p.nodeName, reason: 'no encryption key published yet: traffic to it is blocked' }); continue; }
        let secret: Buffer;
        try { secret = pairSecret(this.key, p.publicKey); } catch (e) { res.blocked.push({ nodeName: p.nodeName, reason: `unusable encryption key: ${(e as Error).message}` }); continue; }
        // The pair's generation: the highest both accept. The peer sends to us with it too.
        const tx = Math.min(this.gen, p.generation);
        const ins = new Set<string>();
        for (const g of new Set([tx, this.gen])) {
          const i = directionalSa(secret, g, p.underlayAddr, p.publicKey, local, this.key.publicKey, this.cipher, this.domain.label);
          want.set(stateId(local, i.spi), { src: p.underlayAddr, dst: local, spi: i.spi, reqid: this.reqid(g), key: i.key, inbound: true });
          ins.add(stateId(local, i.spi));
        }
        const o = directionalSa(secret, tx, local, this.key.publicKey, p.underlayAddr, p.publicKey, this.cipher, this.domain.label);
        want.set(stateId(p.underlayAddr, o.spi), { src: local, dst: p.underlayAddr, spi: o.spi, reqid: this.reqid(tx), key: o.key, inbound: false });
        secret.fill(0);
        wantIn.set(p.underlayAddr, ins);
        policies.push({ sel: { src: local, dst: p.underlayAddr, proto: IPPROTO_UDP, dport: this.port }, dir: XFRM_POLICY_OUT, priority: this.prio, action: XFRM_POLICY_ALLOW, tmpl: { reqid: this.reqid(tx) } });
        res.keyed.push({ nodeName: p.nodeName, txGeneration: tx });
      }
      const have = xfrmStateList(this.nl).filter((s) => this.owned(s.reqid));
      const haveIds = new Map(have.map((s) => [stateId(s.dst, s.spi), s]));
      // 1. SAs first (inbound, then outbound): a policy never points at a missing SA.
      for (const inbound of [true, false]) {
        for (const [id, w] of want) {
          if (w.inbound !== inbound || haveIds.has(id)) continue;
          try {
            xfrmStateAdd(this.nl, { src: w.src, dst: w.dst, spi: w.spi, reqid: w.reqid, aead: ESP_CIPHERS[this.cipher].aead, key: w.key, icvBits: ESP_ICV_BITS, sel: { src: w.src, dst: w.dst } });
            res.added++;
          } catch (e) { if (!isExist(e)) throw e; }
          this.log?.info(`${this.tag}: ${inbound ? 'inbound' : 'outbound'} SA ${w.src} > ${w.dst} spi 0x${w.spi.toString(16)} generation ${w.reqid & 0xffff}`);
        }
      }
      // 2. Policies: the per-peer outbound ones switch to their pair's generation here.
      const havePol = xfrmPolicyList(this.nl).filter((p) => p.priority === this.prio || p.priority === this.blockPrio);
      for (const p of policies) {
        const h = havePol.find((x) => x.dir === p.dir && sameSel(x.sel, p.sel));
        if (h && h.priority === p.priority && h.action === p.action && (h.tmpl?.reqid ?? -1) === (p.tmpl?.reqid ?? -1)) continue;
        xfrmPolicyUpdate(this.nl, p);
        res.added++;
      }
      for (const h of havePol) {
        if (policies.some((p) => p.dir === h.dir && sameSel(h.sel, p.sel))) continue;
        try { xfrmPolicyDel(this.nl, h); res.removed++; } catch (e) { if (!isNotFound(e)) throw e; }
      }
      // 3. Outbound SAs no policy uses any more; inbound ones once the peer moved on.
      for (const s of have) {
        const id = stateId(s.dst, s.spi);
        if (want.has(id)) { this.retiring.delete(id); continue; }
        if (s.src === local) { this.delState(s); res.removed++; continue; }
        const since = this.retiring.get(id) ?? now;
        this.retiring.set(id, since);
        const current = wantIn.get(s.src);
        const moved = !!current && [...current].some((cid) => (haveIds.get(cid)?.packets ?? 0n) > 0n);
        if (moved || now - since >= this.graceMs) {
          this.delState(s);
          this.retiring.delete(id);
          res.removed++;
        }
      }
    } finally {
      for (const w of want.values()) w.key.fill(0);
    }
    return res;
  }

  private delState(s: XfrmState): void {
    try { xfrmStateDel(this.nl, s); } catch (e) { if (!isNotFound(e)) throw e; }
    this.log?.info(`${this.tag}: retired SA ${s.src} > ${s.dst} spi 0x${s.spi.toString(16)} generation ${s.reqid & 0xffff}`);
  }

  /** Whether inbound SAs are waiting to be retired (the caller syncs again later). */
  get pendingRetirement(): number { return this.retiring.size; }

  /** Removes knit's policies and SAs (the backend stops encrypting, or its address changed). */
  removeAll(): number {
    this.local = undefined;
    return removeEspLeftovers(this.nl, this.log, this.domain);
  }

  close(): void {
    this.nl.close();
  }
}

/** Removes every xfrm policy and SA of one knit datapath (domain) in the namespace; how many. */
export function removeEspLeftovers(nl: Netlink, log?: Logger, domain: EspDomain = POD_NETWORK_ESP): number {
  let n = 0;
  for (const p of xfrmPolicyList(nl)) {
    if (p.priority !== domain.priority && p.priority !== domain.priority + 1) continue;
    try { xfrmPolicyDel(nl, p); n++; } catch (e) { if (!isNotFound(e)) throw e; }
  }
  for (const s of xfrmStateList(nl)) {
    if (!isKnitReqid(s.reqid, domain.reqidBase)) continue;
    try { xfrmStateDel(nl, s); n++; } catch (e) { if (!isNotFound(e)) throw e; }
  }
  if (n) log?.info(`esp${domain.label ? ` ${domain.label}` : ''}: removed ${n} xfrm object(s)`);
  return n;
}
