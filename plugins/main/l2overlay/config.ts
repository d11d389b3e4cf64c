// knit-l2overlay's config, as knitd renders it for an overlay network (pkg/network/conflist.ts):
// `{"type":"knit-l2overlay","vni":4096,"runDir":"/run/knit","internal":false,"isolation":true,
// "macFromAddress":true,"ipam":{"type":"knit-etcd-ipam",...}}`. The attachment itself is
// knit-bridge's, run with a synthesized config on the network's bridge knb<vni>, which knitd creates on every node.
import { bool } from '../../../pkg/cni/confkeys';
import { CniError, Code, invalidConfig, show } from '../../../pkg/cni/errors';
import type { Context } from '../../../pkg/cni/skel';
import type { NetConf } from '../../../pkg/cni/types';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';
import { espUnavailable, probeEsp } from '../../../pkg/agent/backend/esp';
import { DEFAULT_ESP_CIPHER, ESP_CIPHERS, isEspCipher, type EspCipherName } from '../../../pkg/agent/backend/esp-keys';
import { parseEtcdConn, type EtcdConnConfig } from '../../../pkg/ipam/etcd-config';
import { overlayBridgeName } from '../../../pkg/network/conflist';
import { nodeFilePath, readNodeFile, type NetworkNodeFile } from '../../../pkg/network/node-file';
import { NAME_RE, VNI_MAX } from '../../../pkg/network/spec';
export { aliasesOf } from '../../../pkg/dns/names';

export interface L2Conf {
  network: string;
  vni: number;
  bridge: string;
  runDir: string;
  internal: boolean;
  isolation: boolean;
  mtu?: number;
  /** The network is encrypted (-o encrypted): ESP between nodes, or no ADD at all (code 101). */
  encrypted: boolean;
  /** The container's MAC derived from its first IPv4 address (knitd renders true; D28): passed on to knit-bridge. */
  macFromAddress: boolean;
  /** Its ESP cipher (-o cipher; the conflist's "cipher", absent: aes-gcm): the one knitd's datapath for it uses. */
  cipher: EspCipherName;
  /** The IPAM's etcd and node name: where this node's endpoints are recorded; etcd absent on the mesh (`"datastore": "mesh"`: through knitd). */
  etcd?: EtcdConnConfig;
  nodeName: string;
}

export function parseL2Conf(conf: NetConf): L2Conf {
  // A named network's name (knitctl's rule). Longer names than that reached nft's 128-character
  // comment limit in knit-bridge's masquerade/isolation entries: code 5 (found by the fuzz suite).
  if (!NAME_RE.test(conf.name)) throw invalidConfig('name', conf.name, 'a named network\'s name: a letter or digit, then letters, digits, "_", "." or "-", at most 63 characters');
  const vni = conf.vni;
  if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 1 || vni > VNI_MAX) throw invalidConfig('vni', vni, `the network's VXLAN id, an integer from 1 to ${VNI_MAX}`);
  const runDir = conf.runDir ?? DEFAULT_RUN_DIR;
  if (typeof runDir !== 'string' || !runDir.startsWith('/')) throw invalidConfig('runDir', runDir, `an absolute directory path (default ${DEFAULT_RUN_DIR})`);
  const mtu = conf.mtu;
  if (mtu !== undefined && (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) throw invalidConfig('mtu', mtu, 'an integer from 68 to 65535 (absent: the VXLAN device\'s)');
  const mesh = conf.datastore === 'mesh';
  if (conf.datastore !== undefined && !mesh) throw invalidConfig('datastore', conf.datastore, '"mesh" (knitd --datastore mesh renders it), or absent (etcd)');
  const ipam = conf.ipam as Record<string, unknown> | undefined;
  const ipamType = mesh ? 'knit-mesh-ipam' : 'knit-etcd-ipam';
  if (!ipam || ipam.type !== ipamType) {
    throw invalidConfig('ipam.type', ipam?.type, `"${ipamType}": an overlay network's addresses are cluster-wide (knitctl network create renders it)`);
  }
  const nodeName = ipam.nodeName;
  if (typeof nodeName !== 'string' || !nodeName) throw invalidConfig('ipam.nodeName', nodeName, 'the node\'s name, as knitd renders it');
  const encrypted = bool('encrypted', conf.encrypted);
  const cipher = conf.cipher ?? DEFAULT_ESP_CIPHER;
  if (!isEspCipher(cipher)) throw invalidConfig('cipher', conf.cipher, `one of ${Object.keys(ESP_CIPHERS).join(', ')} (absent: ${DEFAULT_ESP_CIPHER})`);
  if (conf.cipher !== undefined && !encrypted) throw invalidConfig('cipher', conf.cipher, 'only with "encrypted": true (knitd renders both for -o encrypted -o cipher=...)');
  return {
    network: conf.name, vni, bridge: overlayBridgeName(vni), runDir, internal: bool('internal', conf.internal),
    isolation: bool('isolation', conf.isolation, true), encrypted, cipher,
    macFromAddress: bool('macFromAddress', conf.macFromAddress), ...(typeof mtu === 'number' ? { mtu } : {}),
    ...(mesh ? {} : { etcd: parseEtcdConn(ipam.etcd) }), nodeName,
  };
}

/**
 * An encrypted network on a kernel without ESP or its cipher (AES-GCM, or ChaCha20-Poly1305 with
 * -o cipher): code 101 naming the missing features, before anything is made (knitd made no
 * devices for it either: never plain text).
 */
export function requireEsp(cfg: L2Conf): void {
  if (!cfg.encrypted) return;
  const missing = probeEsp(null, cfg.cipher);
  if (missing.length) throw espUnavailable(missing, `encrypted network ${cfg.network} (VNI ${cfg.vni}${cfg.cipher === DEFAULT_ESP_CIPHER ? '' : `, ${cfg.cipher}`})`);
}

/** What knitd published for this node; code 11 while it has not (knitd starting or absent). */
export function requireNode(cfg: L2Conf): NetworkNodeFile {
  let node: NetworkNodeFile | null;
  try { node = readNodeFile(cfg.runDir); } catch (e) { throw new CniError(Code.TryAgainLater, `knitd is not ready: ${(e as Error).message}`); }
  if (!node) throw new CniError(Code.TryAgainLater, `knitd is not ready: no ${nodeFilePath(cfg.runDir)} (is knitd running on this node with --etcd-endpoints and --run-dir ${cfg.runDir}?)`);
  if (node.nodeName !== cfg.nodeName) throw new CniError(Code.Conflict, `ipam.nodeName ${show(cfg.nodeName)} is not this node's knitd (${show(node.nodeName)}): the conflist was rendered for another node`);
  return node;
}

/** ctx with its config replaced by the knit-bridge config of this network on this node. */
export function bridgeContext(ctx: Context, cfg: L2Conf, mtu: number | undefined): Context {
  const over: Record<string, unknown> = {
    type: 'knit-bridge', bridge: cfg.bridge, isGateway: true, isDefaultGateway: !cfg.internal, ipMasq: !cfg.internal,
    isolation: cfg.isolation, macFromAddress: cfg.macFromAddress, ...(mtu ? { mtu } : {}),
  };
  const conf = { ...ctx.conf, ...over } as NetConf;
  if (!mtu) delete conf.mtu;
  let raw: Record<string, unknown>;
  try { raw = JSON.parse(ctx.rawConf.toString('utf8')) as Record<string, unknown>; } catch { raw = { ...ctx.conf }; }
  return { ...ctx, conf, rawConf: Buffer.from(JSON.stringify({ ...raw, ...over })) };
}

