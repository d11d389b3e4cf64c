// knitd: knit's node agent. It serves CNI requests (pkg/agent/cni-server.ts) so a plugin call
// needs no Node start, and with --etcd-endpoints runs the overlay agent (cmd/knitd/overlay.ts,
// pkg/agent/agent.ts): subnet lease, VXLAN device, routes/ARP/FDB per peer (docs/overlay.md).
//
//   knitd [--cni-socket-dir DIR] [--netns PATH] [--log-level debug|info|warn|error]
//
// --netns runs the agent inside that network namespace (through nsenter, so every thread of the
// process is there, not only the one that called setns).
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { createLogger, type Level } from '../../pkg/cni/log';
import { CniServer, DEFAULT_SOCKET_DIR } from '../../pkg/agent/cni-server';
import { loadAll } from '../../plugins/registry';
import { resident } from '../../pkg/ipam/resident';
import { OVERLAY_FLAGS, overlayFlags, startLocalResolver, startOverlay, type OverlayFlags } from './overlay';

const USAGE = `usage: knitd [--cni-socket-dir DIR] [--netns PATH] [--log-level debug|info|warn|error]
             [--etcd-endpoints URL[,URL...] [--etcd-prefix /knit] [--etcd-cafile F --etcd-certfile F --etcd-keyfile F]
              [--etcd-username U --etcd-password P] [--node-name NAME] [--iface LINK] [--run-dir /run/knit]
              [--state-dir /var/lib/knit] [--lease-ttl SEC] [--resync-interval SEC] [--metrics-addr HOST:PORT]
              [--dns on|off] [--dns-resolv-conf /etc/resolv.conf] [--key-rotation-interval SEC]]
             [--datastore kubernetes [--kubeconfig FILE] [--net-conf /etc/knit/net-conf.json] (and the agent flags)
              [--cni-conf-dir /etc/cni/net.d] [--ipam-gc-interval SEC (300; 0: off)] [--ipam-gc-grace SEC (300)]]
             [--datastore mesh [--peers HOST[:PORT][,HOST...]] [--mesh-listen ADDR:PORT (0.0.0.0:6788)]
              (--mesh-password SECRET | --mesh-password-file FILE | $KNIT_MESH_PASSWORD)
              [--mesh-full-size N (64)] [--mesh-fanout N (8)] (the same on every member) (and the agent flags)]
  with --etcd-endpoints (or $KNIT_ETCD_ENDPOINTS) knitd also runs the overlay agent (docs/overlay.md);
  the resolver (docs/dns.md) answers named networks' names, and without etcd those of knit-bridge
  networks with "resolver": true on this host (--dns off: neither);
  with --datastore kubernetes the agent uses the Kubernetes API (Node podCIDRs and knit.dev/ annotations),
  and GCs the addresses of knit-etcd-ipam networks in --cni-conf-dir whose pods are gone;
  with --datastore mesh the agent needs no datastore: knitd peers form an authenticated mesh (docs/mesh.md)`;

interface Options { dir: string; netns?: string; level: Level; overlay?: OverlayFlags; flags: Record<string, string | undefined> }

function options(): Options {
  try {
    const { values } = parseArgs({
      options: {
        'cni-socket-dir': { type: 'string', default: process.env.KNIT_CNI_SOCKET_DIR || DEFAULT_SOCKET_DIR },
        netns: { type: 'string' },
        'log-level': { type: 'string', default: process.env.KNIT_LOG_LEVEL || 'info' },
        help: { type: 'boolean', short: 'h' },
        ...OVERLAY_FLAGS,
      },
    });
    if (values.help) { process.stdout.write(`${USAGE}\n`); process.exit(0); }
    const level = values['log-level'] as Level;
    if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new Error(`invalid --log-level ${level}`);
    const overlay = overlayFlags(values as unknown as Record<string, string | undefined>);
    if (!overlay && values.dns !== undefined && values.dns !== 'on' && values.dns !== 'off') throw new Error(`invalid --dns ${values.dns}: on or off`);
    return { dir: values['cni-socket-dir']!, ...(values.netns ? { netns: values.netns } : {}), level, ...(overlay ? { overlay } : {}), flags: values as unknown as Record<string, string | undefined> };
  } catch (e) {
    process.stderr.write(`knitd: ${(e as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
}

/** Runs this same knitd under `nsenter --net=PATH`, forwarding signals and the exit status. */
function reexecIn(netns: string): void {
  const args = process.argv.slice(1).filter((a, i, all) => a !== '--netns' && all[i - 1] !== '--netns' && !a.startsWith('--netns='));
  const child = spawn('nsenter', [`--net=${netns}`, '--', process.execPath, ...process.execArgv, ...args], { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => child.kill(sig));
  child.on('error', (e) => { process.stderr.write(`knitd: nsenter: ${e.message}\n`); process.exit(1); });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
}

async function main(): Promise<void> {
  const opts = options();
  if (opts.netns) return reexecIn(opts.netns);
  const log = createLogger({ level: opts.level, fields: { component: 'knitd' } });
  // Requests share what a long-lived process can keep: knit-etcd-ipam's allocators (plugins/ipam/etcd/plugin.ts).
  resident.enabled = true;
  const plugins = loadAll();
  let server: CniServer;
  try {
    server = await CniServer.start({ dir: opts.dir, plugins, log });
  } catch (e) {
    log.error(`cannot serve CNI requests: ${(e as Error).message}`);
    process.exitCode = 1;
    return;
  }
  log.info(`serving ${[...plugins.keys()].join(', ')} on ${server.socketPath}`);
  const overlay = opts.overlay ? startOverlay(opts.overlay, log) : startLocalResolver(opts.flags, log);
  const stop = (sig: string): void => {
    overlay?.stop();
    log.info(`${sig}: stopping; ${server.active} request(s) in flight`);
    void server.stop().then(() => { log.info('stopped'); process.exit(0); });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

void main();
