// knitctl node: the routed pod network's nodes.
//   knitctl node rm NAME     decommission: delete the node's subnet lease (its peers drop its routes)
import type { CommandModule } from 'yargs';
import { group, leaf, str, withStore, type Ctx } from '../common';

export function commands(ctx: Ctx): CommandModule[] {
  return [group(ctx, ['node'], {
    describe: 'the pod network\'s nodes',
    commands: () => [
      leaf(ctx, ['node', 'rm'], {
        command: 'rm <name>',
        describe: 'decommission a node: delete its subnet lease (its peers drop its routes at once); stop its knitd first',
        positionals: { name: { type: 'string', describe: 'the node name (knitd --node-name)' } },
        run: async (a, c) => {
          const name = str(a, 'name')!;
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
