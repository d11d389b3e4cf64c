// A container's network namespace can be gone in more ways than "no such file": the runtime may
// have unmounted it (the /run/netns file stays, empty), or the path may now be a directory, a
// FIFO, a device or a namespace of another kind. DEL must treat every one as gone and still free
// what the host holds (host veth, IPAM reservation, the network's masquerade, parent records);
// ADD and CHECK must refuse each with code 4 naming CNI_NETNS, quickly (a FIFO must not block).
// Every main plugin, exec'd, in the netns lab.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host, type Netns, type PluginOutput } from '../lab/lab';
import { attachmentLinks, buildKnit, natEmpty, natState, reservationsOf, type KnitBuild } from '../lab/cni';
import { writeLeaseFile } from '../../pkg/agent/lease-file';

type Plugin = 'knit-bridge' | 'knit-macvlan' | 'knit-overlay';

/** Ways a namespace path stops being a namespace; each returns the path DEL is then given. */
const WAYS: Record<string, (pod: Netns) => string> = {
  'removed (ip netns del)': (pod) => { execFileSync('ip', ['netns', 'del', pod.name]); return pod.path; },
  'unmounted (the file stays)': (pod) => { execFileSync('umount', [pod.path]); return pod.path; },
  'replaced by a directory': (pod) => { execFileSync('ip', ['netns', 'del', pod.name]); fs.mkdirSync(pod.path); return pod.path; },
  'replaced by a FIFO': (pod) => { execFileSync('ip', ['netns', 'del', pod.name]); execFileSync('mkfifo', [pod.path]); return pod.path; },
  'a device': (pod) => { execFileSync('ip', ['netns', 'del', pod.name]); return '/dev/null'; },
  'a namespace of another kind': (pod) => { execFileSync('ip', ['netns', 'del', pod.name]); return '/proc/self/ns/uts'; },
};

describe('DEL when the network namespace is gone in any way; ADD/CHECK on a path that is no namespace', function () {
  this.timeout(120_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;
  let host: Host;
  const confs = {} as Record<Plugin, Record<string, unknown>>;
  const dataDirs = {} as Record<Plugin, string>;

  before(async function () {
    requireRoot(this);
    knit = await buildKnit(['knit-bridge', 'knit-macvlan', 'knit-overlay', 'knit-host-local']);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-netns-gone-'));
    const sw = await lab.switch('ngsw');
    host = await lab.host('ng', sw, { address: '10.219.0.1/24' });
    const runDir = path.join(tmp, 'run');
    for (const p of ['knit-bridge', 'knit-macvlan', 'knit-overlay'] as const) dataDirs[p] = path.join(tmp, `ipam-${p}`);
    confs['knit-bridge'] = {
      cniVersion: '1.1.0', name: 'ngbr', type: 'knit-bridge', bridge: 'kngbr0', isGateway: true, ipMasq: true,
      ipam: { type: 'knit-host-local', dataDir: dataDirs['knit-bridge'], ranges: [[{ subnet: '10.219.10.0/24' }]] },
    };
    confs['knit-macvlan'] = {
      cniVersion: '1.1.0', name: 'ngmv', type: 'knit-macvlan', master: 'eth0', runDir,
      ipam: { type: 'knit-host-local', dataDir: dataDirs['knit-macvlan'], ranges: [[{ subnet: '10.219.0.0/24', rangeStart: '10.219.0.10', rangeEnd: '10.219.0.99' }]] },
    };
    const ovRun = path.join(tmp, 'ov-run');
    writeLeaseFile(ovRun, { network: '10.219.128.0/17', subnet: '10.219.130.0/24', mtu: 1450 });
    confs['knit-overlay'] = { cniVersion: '1.1.0', name: 'ngov', type: 'knit-overlay', runDir: ovRun, ipam: { type: 'knit-host-local', dataDir: dataDirs['knit-overlay'] } };
  });

  after(async () => {
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  function call(p: Plugin, command: 'ADD' | 'DEL' | 'CHECK', cid: string, netns: string, conf = confs[p]): Promise<PluginOutput> {
    return lab.runPlugin(host, knit.bin(p), { command, conf, path: [knit.binDir], containerId: cid, netns, ifName: 'eth0' });
  }

  /** Removes whatever a way left at the pod's path (lab cleanup only knows namespaces). */
  function clearPath(pod: Netns): void {
    try { execFileSync('umount', [pod.path], { stdio: 'ignore' }); } catch { /* not mounted */ }
    fs.rmSync(pod.path, { recursive: true, force: true });
  }

  let n = 0;
  for (const p of ['knit-bridge', 'knit-macvlan', 'knit-overlay'] as const) {
    describe(p, () => {
      for (const [way, make] of Object.entries(WAYS)) {
        it(`DEL after the namespace was ${way}: exit 0, nothing left on the host, and again`, async () => {
          const cid = `gone${n++}`;
          const pod = await lab.pod(`ng${n}`);
          try {
            const add = await call(p, 'ADD', cid, pod.path);
            assert.equal(add.code, 0, `ADD: ${add.stdout} ${add.stderr}`);
            assert.equal(reservationsOf(dataDirs[p], String(confs[p].name), cid).length, 1, 'ADD reserved one address');
            const gonePath = make(pod);
            for (const round of ['DEL', 'second DEL']) {
              const del = await call(p, 'DEL', cid, gonePath);
              assert.equal(del.code, 0, `${round}: ${del.stdout} ${del.stderr}`);
              assert.doesNotMatch(del.stderr, /unexpected failure/, round);
            }
            assert.deepEqual(reservationsOf(dataDirs[p], String(confs[p].name), cid), [], 'reservation freed');
            assert.deepEqual((await attachmentLinks(lab, host, String(confs[p].name), cid)).map((l) => l.ifname), [], 'host links of the attachment');
            if (p === 'knit-bridge') assert.ok(natEmpty(await natState(lab, host, 'ngbr')), 'masquerade of the network removed');
            if (p === 'knit-macvlan') {
              const refs = path.join(String(confs[p].runDir), 'macvlan');
              const files = fs.existsSync(refs) ? fs.readdirSync(refs, { recursive: true, encoding: 'utf8' }).map((f) => path.join(refs, f)) : [];
              const holding = files.filter((f) => fs.statSync(f).isFile() && fs.readFileSync(f, 'utf8').includes(cid));
              assert.deepEqual(holding, [], 'parent records of the attachment');
            }
          } finally {
            clearPath(pod);
          }
        });
      }

      for (const [what, netns, why] of [
        ['a directory', '/tmp', 'not a network namespace but a directory'],
        ['a device', '/dev/null', 'not a network namespace but a device'],
        ['a namespace of another kind', '/proc/self/ns/uts', 'not a network namespace'],
        ['a plain file', '', 'not a network namespace'],
        ['a missing path', '/run/netns/knit-no-such-netns', 'no such file'],
      ] as const) {
        it(`ADD and CHECK with CNI_NETNS ${what}: code 4 naming CNI_NETNS, nothing reserved`, async () => {
          const cid = `bad${n++}`;
          let target: string = netns;
          if (!target) { target = path.join(tmp, `plain-${n}`); fs.writeFileSync(target, ''); }
          for (const verb of ['ADD', 'CHECK'] as const) {
            const conf = verb === 'CHECK' ? { ...confs[p], prevResult: { cniVersion: '1.1.0', interfaces: [], ips: [] } } : confs[p];
            const out = await call(p, verb, cid, target, conf);
            assert.equal(out.code, 1, `${verb}: ${out.stdout}`);
            assert.equal(out.json?.code, 4, `${verb}: ${out.stdout}`);
            assert.match(out.json.msg, /CNI_NETNS/);
            assert.ok(out.json.msg.includes(why), `${verb}: ${out.json.msg} should say ${why}`);
            assert.doesNotMatch(out.stderr, /unexpected failure|\n\s+at /, `${verb}: no stack trace`);
          }
          assert.deepEqual(reservationsOf(dataDirs[p], String(confs[p].name), cid), []);
        });
      }

      it('ADD with CNI_NETNS a FIFO: code 4 at once (never blocks on open)', async () => {
        const fifo = path.join(tmp, `fifo-${n++}`);
        execFileSync('mkfifo', [fifo]);
        const t0 = Date.now();
        const out = await call(p, 'ADD', `fifo${n}`, fifo);
        assert.equal(out.json?.code, 4, out.stdout);
        assert.match(out.json.msg, /CNI_NETNS.*a FIFO/);
        assert.ok(Date.now() - t0 < 20_000, 'answered without waiting for a writer');
      });
    });
  }
});
