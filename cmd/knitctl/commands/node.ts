// knitctl node: the routed pod network's nodes.
//   knitctl node rm NAME     decommission: delete the node's subnet lease (its peers drop its routes)
import type { CommandModule } from 'yargs';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';
import { group, leaf, str, value, withStore, type Ctx } from '../common';
import { meshNodeRm, meshRunDir } from './mesh';

export function commands(ctx: Ctx): CommandModule[] {
  return [group(ctx, ['node'], {
    describe: 'the pod network\'s nodes',
    commands: () => [
      leaf(ctx, ['node', 'rm'], {
        command: 'rm <name>',
        describe: 'decommission a node: delete its subnet lease (its peers drop its routes at once); stop its knitd first',
        positionals: { name: { type: 'string', describe: 'the node name (knitd --node-name)' } },
        options: { 'run-dir': value(`on the mesh: the local knitd's --run-dir (default ${DEFAULT_RUN_DIR})`) },
        run: async (a, c) => {
          const name = str(a, 'name')!;
          const dir = meshRunDir(a, c.env);
          if (dir) return meshNodeRm(dir, name);
          return withStore(a, c.env, async (store) => {
            const n = await store.releaseNode(name);
            if (!n) throw new Error(`node ${name} holds no lease under ${store.subnetsPrefix}`);
            return `released ${n} lease(s) of node ${name}; its peers remove its routes`;
          });
        },
      }),
    ],
  })];
}
