// `podman run --rm true` on a knit-bridge network beside the same on a reference bridge network,
// interleaved: what a user of the runtime waits for. Podman runs inside a lab netns (nsenter
// --net, see test/e2e/podman.ts), with its whole configuration in a temp dir. knit is measured
// twice: exec'd (a Node start per plugin call) and served by knitd running in that netns.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, run } from '../../../test/lab/lab';
import { PodmanHost, podmanMissing } from '../../../test/e2e/podman';
import { cleanEnv } from '../runner';
import { startKnitd, type BenchKnitd } from '../knitd';
import type { BenchCase, Suite, SuiteOptions } from '../types';

let lab: Lab | undefined;
let host: PodmanHost | undefined;
let knitd: BenchKnitd | undefined;
let sockDir = '';

/** One `podman run --rm` on `network`, with the plugins' socket dir (knitd or nowhere). */
function podmanRun(network: string, socketDir: string): () => Promise<void> {
  return async () => {
    const h = host!;
    await run('nsenter', [`--net=${h.ns.path}`, 'podman', 'run', '--rm', '--network', network, '--rootfs', h.rootfs, 'true'], {
      env: { ...cleanEnv(), ...h.env, KNIT_CNI_SOCKET_DIR: socketDir, NODE_EXTRA_CA_CERTS: undefined },
      timeoutMs: 60_000,
    });
  };
}

async function setup(opts: SuiteOptions): Promise<{ cases: BenchCase[]; notes: string[] }> {
  const missing = podmanMissing();
  if (missing) return { cases: [], notes: [`skipped: ${missing}`] };
  lab = new Lab();
  const binDir = join(opts.root, 'dist/bin');
  host = await PodmanHost.create(lab, { binDir, bin: (n) => join(binDir, n) }, ['portmap', 'bridge', 'host-local']);
  const portmap = { type: 'portmap', capabilities: { portMappings: true } };
  const knitNet = { name: `${lab.prefix}-knit`, bridge: 'kpb0', subnet: '10.71.0.0/24', dataDir: join(host.dir, 'data/knit') };
  const refNet = { name: `${lab.prefix}-ref`, bridge: 'rpb0', subnet: '10.72.0.0/24', dataDir: join(host.dir, 'data/ref') };
  host.addNetwork(knitNet, [{ type: 'knit-bridge', bridge: knitNet.bridge, isGateway: true, ipMasq: true,
    ipam: { type: 'knit-host-local', dataDir: knitNet.dataDir, ranges: [[{ subnet: knitNet.subnet }]], routes: [{ dst: '0.0.0.0/0' }] } }, portmap]);
  host.addNetwork(refNet, [{ type: 'bridge', bridge: refNet.bridge, isGateway: true, ipMasq: true,
    ipam: { type: 'host-local', dataDir: refNet.dataDir, ranges: [[{ subnet: refNet.subnet }]], routes: [{ dst: '0.0.0.0/0' }] } }, portmap]);
  // knitd in podman's netns, on a socket dir of its own.
  sockDir = mkdtempSync(join(tmpdir(), 'knit-bench-sock-'));
  knitd = await startKnitd(opts.root, host.ns, ['--cni-socket-dir', sockDir]);
  const ref = podmanRun(refNet.name, '/nonexistent');
  return {
    cases: [
      { name: 'podman run --rm true (knit exec)', knit: podmanRun(knitNet.name, '/nonexistent'), knitLabel: 'knit-bridge + knit-host-local + portmap (exec)', reference: ref, referenceLabel: 'bridge + host-local + portmap' },
      { name: 'podman run --rm true (knitd)', knit: podmanRun(knitNet.name, sockDir), knitLabel: 'knit-bridge + knit-host-local + portmap (knitd)', reference: ref, referenceLabel: 'bridge + host-local + portmap' },
    ],
    notes: [
      'podman 4 (CNI backend, runc, vfs, --rootfs on busybox) inside a lab netns; both networks with ipMasq and the reference portmap chained',
      'podman also sends VERSION to every plugin of every conflist: knit answers it in its sh launcher',
      '(knitd): knitd runs in podman\'s netns; the launcher hands each call to it through knit-client',
    ],
  };
}

export const suite: Suite = {
  name: 'podman',
  description: '`podman run --rm true` on a knit-bridge network vs a reference bridge network',
  setup,
  async teardown() {
    await knitd?.stop();
    await host?.cleanup();
    await lab?.cleanup();
    if (sockDir) rmSync(sockDir, { recursive: true, force: true });
  },
};
