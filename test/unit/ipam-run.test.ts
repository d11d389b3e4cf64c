import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseCniArgs } from '../../pkg/cni/args';
import { nullLogger } from '../../pkg/cni/log';
import type { Context } from '../../pkg/cni/skel';
import type { NetConf } from '../../pkg/cni/types';
import { runIpam } from '../../plugins/ipam/registry';

describe('runIpam: knit IPAM in-process, others exec\'d', () => {
  let dataDir: string;
  beforeEach(() => { dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-runipam-')); });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  function ctx(type: string, command: Context['command'] = 'ADD'): Context {
    const conf = { cniVersion: '1.0.0', name: 'rnet', type: 'knit-bridge', ipam: { type, dataDir, ranges: [[{ subnet: '10.66.0.0/24' }]] } } as NetConf;
    return {
      command, containerId: 'rc1', netns: '/run/netns/x', ifName: 'eth0', args: parseCniArgs('IP=10.66.0.9'),
      path: ['/usr/lib/cni'], env: { CNI_CONTAINERID: 'rc1', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/x', CNI_PATH: '/usr/lib/cni', CNI_ARGS: 'IP=10.66.0.9' },
      conf, rawConf: Buffer.from(JSON.stringify(conf)), log: nullLogger, validAttachments: [],
    };
  }

  it('serves knit-host-local in-process (static request from CNI_ARGS honoured)', async () => {
    const c = ctx('knit-host-local');
    const r = await runIpam('ADD', c, c.conf);
    assert.deepEqual(r?.ips, [{ address: '10.66.0.9/24', gateway: '10.66.0.1' }]);
    assert.ok(fs.existsSync(path.join(dataDir, 'rnet', 'ips', '10.66.0.9')));
    await runIpam('CHECK', c, { ...c.conf, prevResult: r });
    await runIpam('DEL', c, c.rawConf);
    assert.deepEqual(fs.readdirSync(path.join(dataDir, 'rnet', 'ips')), []);
  });

  it('execs any other IPAM type from CNI_PATH', async function () {
    if (!fs.existsSync('/usr/lib/cni/host-local')) this.skip();
    const c = ctx('host-local');
    const r = await runIpam('ADD', c, c.conf);
    assert.equal(r?.ips?.[0]?.address, '10.66.0.9/24');
    assert.ok(fs.existsSync(path.join(dataDir, 'rnet', '10.66.0.9')), 'the reference wrote its own file');
    await runIpam('DEL', c, c.conf);
  });
});
