// knitctl network: Docker-style named networks (issue 12). Their verbs come here, one leaf each:
//   network create [-d DRIVER] [--subnet CIDR]... [--gateway IP]... [--ip-range CIDR]...
//                  [--aux-address NAME=IP]... [-o KEY=VALUE]... [--internal] [--ipv6] NAME
//   network ls | network inspect NAME... | network rm NAME...
// (a repeated flag: `{ type: 'string', array: true, nargs: 1, requiresArg: true }` collects every
// value and leaves NAME alone; a single-value one: common.ts value(), the last one wins.)
// Until then the group is hidden and holds only the deprecated `network set FILE` / `network get`,
// the pod network's cluster config, now `pod-network set/get` (commands/pod-network.ts): they
// still work, with one warning line on stderr.
import type { CommandModule } from 'yargs';
import { group, leaf, type Ctx } from '../common';
import * as podNetwork from './pod-network';

export function commands(ctx: Ctx): CommandModule[] {
  // Warned as soon as the alias is parsed: with its output, its error or its --help.
  const deprecated = (verb: string): void => {
    ctx.warnings.push(`'knitctl network ${verb}' is deprecated: use 'knitctl pod-network ${verb}' ('network' is for named networks)`);
  };
  return [group(ctx, ['network'], {
    describe: false,
    commands: () => [
      leaf(ctx, ['network', 'set'], {
        command: 'set <file>',
        describe: false,
        positionals: { file: { type: 'string' } },
        builder: (y) => { deprecated('set'); return y.usage('knitctl network set <file>\n\ndeprecated: knitctl pod-network set <file>'); },
        run: (a, c) => podNetwork.set(a, c.env),
      }),
      leaf(ctx, ['network', 'get'], {
        command: 'get',
        describe: false,
        builder: (y) => { deprecated('get'); return y.usage('knitctl network get\n\ndeprecated: knitctl pod-network get'); },
        run: (a, c) => podNetwork.get(a, c.env),
      }),
    ],
  })];
}
