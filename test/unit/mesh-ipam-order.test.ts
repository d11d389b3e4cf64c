// knit-mesh-ipam's order within a node's blocks (pkg/mesh/ipam.ts): round robin after the address
// handed out last, as host-local does, so a freed address is not handed out again at once (with a
// new MAC; pods elsewhere may still cache the old one: docs/mesh.md). Kept across a restart.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MeshIpam } from '../../pkg/mesh/ipam';
import { MeshNetworks } from '../../pkg/mesh/networks';
import { MeshNode } from '../../pkg/mesh/node';

describe('mesh: knit-mesh-ipam hands out addresses round robin', () => {
  let tmp: string;
  let n: MeshNode;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-meshipam-')); });
  after(() => { n?.stop(); fs.rmSync(tmp, { recursive: true, force: true }); });

  it('a freed address comes back only after the rest of the block; the order survives a restart', async () => {
    n = new MeshNode({ name: 'solo', secret: Buffer.from('x'), listen: { host: '127.0.0.1', port: 0 }, peers: [], stateDir: null, ttlSec: 30 });
    await n.start();
    await new MeshNetworks(n, 0).create({ name: 'rr', driver: 'overlay', subnets: ['10.61.0.0/24'], ipRanges: ['10.61.0.0/28'] });
    const ipam = new MeshIpam(n, tmp);
    const add = async (m: MeshIpam, id: string): Promise<string> => (await m.allocate('rr', { containerId: id, ifName: 'eth0' }, []))[0]!.ip;
    const first = await add(ipam, 'p0');
    const second = await add(ipam, 'p1');
    assert.deepEqual(await ipam.release('rr', { containerId: 'p0', ifName: 'eth0' }), [first]);
    const third = await add(new MeshIpam(n, tmp), 'p2'); // a restarted knitd: the same order
    assert.notEqual(third, first, 'the address just freed is not handed out again');
    assert.equal(Number(third.split('.')[3]), Number(second.split('.')[3]) + 1);
    // The rest of the /28 (the network and gateway addresses are never handed out), then the freed one.
    const rest: string[] = [];
    for (let i = 3; ; i++) {
      const ip = await add(new MeshIpam(n, tmp), `p${i}`);
      rest.push(ip);
      if (ip === first || rest.length > 16) break;
    }
    assert.equal(rest.at(-1), first, `wrapped to ${first} last: ${rest.join(' ')}`);
  });
});
