// Micro-benchmark of pod network setup through pkg/netlink, in its own namespaces:
// veth with the peer born in the pod netns (eth0, MAC, MTU), host end up on a bridge,
// pod address + default route, pod side up. Prints the median over N pods.
//   node --import tsx scripts/bench-netlink.ts [iterations]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as nl from '../pkg/netlink';

const N = Number(process.argv[2] ?? 50);
// knt<4 hex>- so scripts/lab-clean recognises leftovers.
const prefix = `knt${randomBytes(2).toString('hex')}-bench`;
const made: string[] = [];

function netnsAdd(name: string): string {
  execFileSync('ip', ['netns', 'add', name]);
  made.push(name);
  return `/run/netns/${name}`;
}

function cleanup(): void {
  for (const name of made.splice(0)) {
    try { execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' }); } catch { /* gone */ }
  }
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { cleanup(); process.exit(130); });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function main(): void {
  const hostPath = netnsAdd(`${prefix}-host`);
  const pods = Array.from({ length: N }, (_, i) => netnsAdd(`${prefix}-p${i}`));
  const host = nl.Netlink.open(hostPath);
  nl.linkAdd(host, { kind: 'bridge', name: 'br0', up: true });
  nl.addrAdd(host, { link: 'br0', address: '10.99.0.1/16' });
  const br = nl.linkGet(host, 'br0').index;

  const times: number[] = [];
  for (let i = 0; i < N; i++) {
    const hex = (i + 2).toString(16).padStart(4, '0');
    const t0 = performance.now();
    nl.linkAdd(host, {
      kind: 'veth', name: `veth${hex}`, mtu: 1450, up: true, master: br,
      peer: { name: 'eth0', mac: `02:42:0a:63:${hex.slice(0, 2)}:${hex.slice(2)}`, mtu: 1450, netns: pods[i]! },
    });
    const pod = nl.Netlink.open(pods[i]);
    // One lookup gives the index (and MAC, for the CNI result); then address by index.
    const eth0 = nl.linkGet(pod, 'eth0').index;
    nl.addrAdd(pod, { link: eth0, address: `10.99.${(i + 2) >> 8}.${(i + 2) & 0xff}/16` });
    nl.linkSetUp(pod, eth0);
    nl.routeAdd(pod, { dst: '0.0.0.0/0', gw: '10.99.0.1', dev: eth0 });
    pod.close();
    times.push(performance.now() - t0);
  }
  host.close();

  // One sanity check through the oracle, outside the timing.
  const route = execFileSync('ip', ['-n', `${prefix}-p0`, '-json', 'route', 'show', 'default'], { encoding: 'utf8' });
  if (!route.includes('10.99.0.1')) throw new Error(`pod 0 has no default route: ${route}`);

  const ms = (x: number): string => x.toFixed(3);
  console.log(`pod setup via pkg/netlink, ${N} pods: median ${ms(median(times))} ms, ` +
    `min ${ms(Math.min(...times))} ms, max ${ms(Math.max(...times))} ms (first ${ms(times[0]!)} ms incl. addon load)`);
}

try {
  main();
} finally {
  cleanup();
}
