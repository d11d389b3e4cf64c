// knitctl attach / detach: put a running container on a network, and take it off (pipework's and
// `weave attach`'s job; Docker's `network connect/disconnect`). The work is in pkg/attach, loaded
// only when these commands run.
//   knitctl attach NETWORK TARGET [--ip ADDR/LEN]... [--ifname NAME] [--mac MAC] [--alias NAME]...
//   knitctl detach NETWORK TARGET [--ifname NAME]
// TARGET: a netns path, a PID, or a podman container name or ID.
import type { CommandModule, Options } from 'yargs';
import type { AttachEnv } from '../../../pkg/attach/attach';
import { leaf, str, UsageError, value, type Ctx, type Flags } from '../common';

export const DEFAULT_CONF_DIR = '/etc/cni/net.d';
/** Where runtimes look for plugins when CNI_PATH is not set (podman's cni_plugin_dirs, /opt/cni/bin first). */
export const DEFAULT_CNI_PATH = ['/opt/cni/bin', '/usr/local/libexec/cni', '/usr/libexec/cni', '/usr/local/lib/cni', '/usr/lib/cni'];

const many = (describe: string): Options => ({ type: 'string', requiresArg: true, describe, coerce: (v: unknown) => (Array.isArray(v) ? v : [v]).map(String) });

const where: Record<string, Options> = {
  'cni-conf-dir': value(`the CNI config directory holding NETWORK's conflist (default ${DEFAULT_CONF_DIR})`),
  'cni-path': value(`plugin directories, ':'-separated (default $CNI_PATH, else ${DEFAULT_CNI_PATH.join(':')})`),
  'cni-cache-dir': value('libcni\'s cache directory, where attachments are recorded in results/ (default $CNI_CACHE_DIR, else /var/lib/cni)'),
  'podman-root': value('podman --root, for a container in other storage than the default'),
  'podman-runroot': value('podman --runroot'),
  json: { type: 'boolean', describe: 'the outcome as JSON' },
};

const positionals = {
  network: { type: 'string', describe: 'a network by its conflist name: knitctl network create\'s (knit-<name>.conflist) or any conflist in --cni-conf-dir' },
  target: { type: 'string', describe: 'a network namespace path (/run/netns/NAME), a PID (its /proc/PID/ns/net), or a running podman container\'s name or ID' },
} as const;

export function commands(ctx: Ctx): CommandModule[] {
  return [
    leaf(ctx, ['attach'], {
      command: 'attach <network> <target>',
      describe: 'put a running container (netns, PID or podman container) on a network: its conflist\'s ADD, recorded in libcni\'s cache',
      positionals,
      options: {
        ip: many('ADDR/LEN to ask for (the "ips" capability); twice for dual stack'),
        ifname: value('the interface in the container (default: the first free ethN)'),
        mac: value('the interface\'s MAC (the "mac" capability)'),
        alias: many('a further name on the network (the "aliases" capability); repeatable'),
        ...where,
      },
      builder: (y) => y
        .example('knitctl attach app /run/netns/box1 --ip 10.32.0.11/24', 'weave attach 10.32.0.11/24 box1')
        .example('knitctl attach app web', 'podman container web on network app (docker network connect app web)'),
      run: async (a, c) => {
        const { attach } = load();
        const r = await guard(() => attach({
          network: str(a, 'network')!, target: str(a, 'target')!, ...(a.ip ? { ips: a.ip as string[] } : {}), ...(a.alias ? { aliases: a.alias as string[] } : {}),
          ...(a.ifname !== undefined ? { ifName: str(a, 'ifname')! } : {}), ...(a.mac !== undefined ? { mac: str(a, 'mac')! } : {}),
        }, attachEnv(a, c.env)));
        if (a.json) return JSON.stringify({ network: r.network, target: r.target, ifName: r.ifName, result: r.result, conflist: r.conflist, cacheFile: r.cacheFile }, null, 2);
        const ips = (r.result.ips ?? []).map((x) => x.address);
        return `attached ${r.target.label} to ${r.network} as ${r.ifName}${ips.length ? `: ${ips.join(', ')}` : ''} (container ID ${r.target.containerId})`;
      },
    }),
    leaf(ctx, ['detach'], {
      command: 'detach <network> <target>',
      describe: 'take a container off a network attached with knitctl attach: DEL with the cached config; nothing attached is fine',
      positionals: { ...positionals, target: { ...positionals.target, describe: `${positionals.target.describe}; once gone, its container ID` } },
      options: {
        ifname: value('only this interface (default: every attachment of TARGET to NETWORK); with nothing cached, runs the network\'s DEL for it anyway'),
        ...where,
      },
      run: async (a, c) => {
        const { detach } = load();
        const network = str(a, 'network')!;
        const r = await guard(() => detach({ network, target: str(a, 'target')!, ...(a.ifname !== undefined ? { ifName: str(a, 'ifname')! } : {}) }, attachEnv(a, c.env)));
        if (a.json) return JSON.stringify(r, null, 2);
        const who = r.target?.label ?? `container ${r.containerId}`;
        if (r.ifNames.length) return `detached ${who} from ${network} (${r.ifNames.join(', ')})`;
        if (r.uncachedDel) return `${who} had no cached attachment to ${network}; ran the network's DEL for ${str(a, 'ifname')} anyway`;
        return `${who} is not attached to ${network}: nothing to do`;
      },
    }),
  ];
}

const load = (): typeof import('../../../pkg/attach/attach') => require('../../../pkg/attach/attach') as typeof import('../../../pkg/attach/attach');

function attachEnv(a: Flags, env: NodeJS.ProcessEnv): AttachEnv {
  const cniPath = (str(a, 'cni-path') ?? env.CNI_PATH ?? '').split(':').filter(Boolean);
  const podman = { root: str(a, 'podman-root'), runroot: str(a, 'podman-runroot'), env: { ...process.env, ...env } };
  return {
    confDir: str(a, 'cni-conf-dir') ?? DEFAULT_CONF_DIR,
    cniPath: cniPath.length ? cniPath : DEFAULT_CNI_PATH,
    cacheDir: str(a, 'cni-cache-dir') ?? env.CNI_CACHE_DIR ?? '/var/lib/cni',
    podman: Object.fromEntries(Object.entries(podman).filter(([, v]) => v !== undefined)),
    // The plugins' stderr is theirs to show (the spec asks runtimes to pass it on).
    exec: { forwardStderr: true },
  };
}

/** pkg/attach's mistakes of form as usage errors (exit code 2); the rest stay failures (exit code 1). */
async function guard<T>(f: () => Promise<T>): Promise<T> {
  const { AttachError } = load();
  try {
    return await f();
  } catch (e) {
    if (e instanceof AttachError && e.usage) throw new UsageError(e.message);
    if ((e as { name?: string }).name === 'CniError') {
      const c = e as Error & { code: number; details?: string };
      throw new Error(`${c.message} (CNI error code ${c.code}${c.details ? `; ${c.details}` : ''})`);
    }
    throw e;
  }
}
