// knitctl key: the encrypted pod network's key generation (docs/encryption.md).
//   knitctl key rotate [--json]   move the generation by one: every knitd installs the new SAs,
//                                 switches when its peer has them, then retires the old ones
//   knitctl key show [--json]     the generation and when it last moved (no secret exists here)
import type { CommandModule, Options } from 'yargs';
import { group, leaf, withStore, type Ctx } from '../common';

const json: Options = { type: 'boolean', describe: 'as JSON' };

export function commands(ctx: Ctx): CommandModule[] {
  return [group(ctx, ['key'], {
    describe: 'the encrypted pod network\'s key generation',
    commands: () => [
      leaf(ctx, ['key', 'rotate'], {
        command: 'rotate',
        describe: 'rotate the encryption keys: move the key generation by one (every node derives new pair keys; TCP streams keep going)',
        options: { json },
        run: (a, c) => withStore(a, c.env, async (store) => {
          const cur = await store.getKeyGeneration();
          const next = await store.bumpKeyGeneration(cur?.generation ?? null);
          if (a.json) return JSON.stringify(next);
          return next.generation === (cur?.generation ?? 0) + 1
            ? `key generation ${next.generation} (was ${cur?.generation ?? 0}): nodes install it, switch, then retire ${cur?.generation ?? 0}`
            : `key generation moved meanwhile (another rotation): now ${next.generation}`;
        }),
      }),
      leaf(ctx, ['key', 'show'], {
        command: 'show',
        describe: 'the current key generation and when it moved',
        options: { json },
        run: (a, c) => withStore(a, c.env, async (store) => {
          const cur = (await store.getKeyGeneration()) ?? { generation: 0, at: null };
          return a.json ? JSON.stringify(cur) : `key generation ${cur.generation}${cur.at ? `, since ${cur.at}` : ' (never rotated)'}`;
        }),
      }),
    ],
  })];
}
