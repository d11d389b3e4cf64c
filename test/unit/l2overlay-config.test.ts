// knit-l2overlay's config (what knitd renders for a named overlay network), validated without
// root: the defaults, a rendered config accepted, and each bad key answered with code 7 naming
// the key, the bad value and what is valid.
import assert from 'node:assert/strict';
import { parseL2Conf } from '../../plugins/main/l2overlay/config';
import { CniError } from '../../pkg/cni/errors';
import type { NetConf } from '../../pkg/cni/types';

const ETCD = { endpoints: ['http://10.0.0.1:2379'] };
const IPAM = { type: 'knit-etcd-ipam', nodeName: 'n1', etcd: ETCD, ranges: [[{ subnet: '10.50.0.0/24' }]] };
const conf = (extra: Record<string, unknown> = {}): NetConf =>
  ({ cniVersion: '1.0.0', name: 'web', type: 'knit-l2overlay', vni: 4096, ipam: IPAM, ...extra }) as NetConf;

function rejects(extra: Record<string, unknown>, ...fragments: string[]): void {
  let err: unknown;
  try { parseL2Conf(conf(extra)); } catch (e) { err = e; }
  assert.ok(err instanceof CniError, `${JSON.stringify(extra)} was accepted`);
  assert.equal(err.code, 7, `${JSON.stringify(extra)}: ${err.message}`);
  for (const f of fragments) assert.ok(err.message.includes(f), `${JSON.stringify(extra)}: "${err.message}" lacks "${f}"`);
}

describe('knit-l2overlay config', () => {
  it('fills the defaults', () => {
    assert.deepEqual(parseL2Conf(conf()), {
      network: 'web', vni: 4096, bridge: 'knb4096', runDir: '/run/knit', internal: false, isolation: true, encrypted: false, cipher: 'aes-gcm', macFromAddress: false,
      etcd: { endpoints: ['http://10.0.0.1:2379'], prefix: '/knit', timeoutMs: 5000 }, nodeName: 'n1',
    });
  });

  it('accepts what knitd renders', () => {
    const c = parseL2Conf(conf({ vni: 16777215, runDir: '/run/knit-test', internal: true, isolation: false, mtu: 1400, encrypted: true, macFromAddress: true }));
    assert.equal(c.encrypted, true);
    assert.equal(c.macFromAddress, true);
    rejects({ encrypted: 'yes' }, 'invalid encrypted "yes"', 'true or false');
    assert.equal(c.cipher, 'aes-gcm');
    assert.equal(parseL2Conf(conf({ encrypted: true, cipher: 'chacha20-poly1305' })).cipher, 'chacha20-poly1305');
    rejects({ encrypted: true, cipher: 'des' }, 'invalid cipher "des"', 'one of aes-gcm, chacha20-poly1305');
    rejects({ cipher: 'chacha20-poly1305' }, 'invalid cipher "chacha20-poly1305"', 'only with "encrypted": true');
    assert.equal(c.vni, 16777215);
    assert.equal(c.bridge, 'knb16777215');
    assert.equal(c.runDir, '/run/knit-test');
    assert.equal(c.internal, true);
    assert.equal(c.isolation, false);
    assert.equal(c.mtu, 1400);
  });

  it('vni: an integer from 1 to 16777215', () => {
    const valid = "the network's VXLAN id, an integer from 1 to 16777215";
    rejects({ vni: 0 }, 'invalid vni 0', valid);
    rejects({ vni: 16777216 }, 'invalid vni 16777216', valid);
    rejects({ vni: '4096' }, 'invalid vni "4096"', valid);
    rejects({ vni: 4096.5 }, 'invalid vni 4096.5', valid);
    rejects({ vni: undefined }, 'invalid vni', valid);
  });

  it('runDir: an absolute directory path', () => {
    rejects({ runDir: 'run/knit' }, 'invalid runDir "run/knit"', 'an absolute directory path (default /run/knit)');
    rejects({ runDir: 1 }, 'invalid runDir 1', 'an absolute directory path (default /run/knit)');
  });

  it('mtu: an integer from 68 to 65535', () => {
    const valid = "an integer from 68 to 65535 (absent: the VXLAN device's)";
    rejects({ mtu: 67 }, 'invalid mtu 67', valid);
    rejects({ mtu: 65536 }, 'invalid mtu 65536', valid);
    rejects({ mtu: '1400' }, 'invalid mtu "1400"', valid);
  });

  for (const key of ['internal', 'isolation', 'macFromAddress']) {
    it(`${key}: true or false`, () => {
      rejects({ [key]: 'true' }, `invalid ${key} "true"`, 'true or false');
      rejects({ [key]: 0 }, `invalid ${key} 0`, 'true or false');
    });
  }

  it('ipam: knit-etcd-ipam with the node name and etcd', () => {
    rejects({ ipam: undefined }, 'invalid ipam.type undefined', '"knit-etcd-ipam"');
    rejects({ ipam: { ...IPAM, type: 'knit-host-local' } }, 'invalid ipam.type "knit-host-local"', '"knit-etcd-ipam"');
    rejects({ ipam: { ...IPAM, nodeName: '' } }, 'invalid ipam.nodeName ""', "the node's name");
    rejects({ ipam: { ...IPAM, nodeName: undefined } }, 'invalid ipam.nodeName', "the node's name");
    rejects({ ipam: { ...IPAM, etcd: { endpoints: [] } } }, 'invalid ipam.etcd.endpoints []', 'a non-empty array of URLs');
    rejects({ ipam: { ...IPAM, etcd: { endpoints: ['10.0.0.1:2379'] } } }, 'invalid ipam.etcd.endpoints[0] "10.0.0.1:2379"', 'an http:// or https:// URL');
  });

  it('datastore "mesh": knit-mesh-ipam and no etcd (endpoints and addresses through knitd); any other datastore refused', () => {
    const MESH_IPAM = { type: 'knit-mesh-ipam', nodeName: 'n1', runDir: '/run/knit', ranges: [[{ subnet: '10.50.0.0/24' }]] };
    const c = parseL2Conf(conf({ datastore: 'mesh', ipam: MESH_IPAM }));
    assert.equal(c.etcd, undefined);
    assert.equal(c.nodeName, 'n1');
    rejects({ datastore: 'etcd' }, 'invalid datastore "etcd"', '"mesh" (knitd --datastore mesh renders it), or absent (etcd)');
    rejects({ datastore: 'mesh' }, 'invalid ipam.type "knit-etcd-ipam"', '"knit-mesh-ipam"');
    rejects({ ipam: MESH_IPAM }, 'invalid ipam.type "knit-mesh-ipam"', '"knit-etcd-ipam"');
  });
});
