// knitctl pod-network: the routed pod network's cluster config (flannel's net-conf.json: one
// network, a subnet per node, the backend), which knitd on every node reads (docs/overlay.md).
//   knitctl pod-network set FILE     validate and store it
//   knitctl pod-network get          show it
// (Formerly `network set/get`; `network` now names Docker-style named networks, commands/network.ts.)
import * as fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { parseNetworkConfig } from '../../../pkg/agent/network-config';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';
import { controlCall } from '../../../pkg/mesh/control';
import { group, leaf, str, value, withStore, type Ctx, type Flags } from '../common';
import { meshRunDir } from './mesh';

const runDir = { 'run-dir': value(`on the mesh: the local knitd's --run-dir (default ${DEFAULT_RUN_DIR})`) };

export function commands(ctx: Ctx): CommandModule[] {
  return [group(ctx, ['pod-network'], {
    describe: 'the routed pod network\'s cluster config (network, subnet per node, backend) that knitd reads',
    commands: () => [
      leaf(ctx, ['pod-network', 'set'], {
        command: 'set <file>',
        describe: 'validate a config file (conf/network.json) and store it in etcd',
        positionals: { file: { type: 'string', describe: 'JSON: {"network": CIDR, "subnetLen": N, "backend": {"type": "vxlan"|"host-gw", ...}}' } },
        options: runDir,
        run: (a, c) => set(a, c.env),
      }),
      leaf(ctx, ['pod-network', 'get'], {
        command: 'get',
        describe: 'show the stored config (JSON)',
        options: runDir,
        run: (a, c) => get(a, c.env),
      }),
    ],
  })];
}

export function set(a: Flags, env: NodeJS.ProcessEnv): Promise<string> {
  const text = fs.readFileSync(str(a, 'file')!, 'utf8');
  const cfg = parseNetworkConfig(text);
  const dir = meshRunDir(a, env);
  if (dir) return controlCall<string>(dir, { op: 'config-set', json: JSON.stringify(cfg) }).then((j) => `network config stored on the mesh (through ${dir}): ${j}`);
  return withStore(a, env, async (store) => {
    await store.putNetworkConfig(JSON.stringify(cfg));
    return `network config stored at ${store.configKey}: ${JSON.stringify(cfg)}`;
  });
}

export function get(a: Flags, env: NodeJS.ProcessEnv): Promise<string> {
  const dir = meshRunDir(a, env);
  if (dir) {
    return controlCall<string | null>(dir, { op: 'config-get' }).then((raw) => {
      if (raw === null) throw new Error(`no network config on the mesh yet (knitctl pod-network set FILE --run-dir ${dir})`);
      return JSON.stringify(JSON.parse(raw), null, 2);
    });
  }
  return withStore(a, env, async (store) => {
    const raw = await store.getNetworkConfig();
    if (raw === null) throw new Error(`no network config at ${store.configKey} (knitctl pod-network set FILE)`);
    return JSON.stringify(JSON.parse(raw), null, 2);
  });
}
