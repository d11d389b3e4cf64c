// knitctl dns: what knitd's resolver answers (docs/dns.md), computed from the same etcd records
// every knitd reads (networks, endpoints, services), so it shows what any node answers. On the
// mesh (no etcd) from the local knitd's replica: networks, endpoints and services.
//   dns ls [--network N] [--json]
import type { CommandModule } from 'yargs';
import { EtcdClient, prefixEnd } from '../../../pkg/etcd';
import { RecordTable, describeSource } from '../../../pkg/dns/table';
import { SpecError } from '../../../pkg/network/spec';
import { NetworkStore } from '../../../pkg/network/store';
import { decodeService, servicesPrefix, type Service } from '../../../pkg/service/spec';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';
import { MeshNetworkClient } from '../../../pkg/mesh/network-client';
import { MeshServiceClient } from '../../../pkg/mesh/service-client';
import type { Network } from '../../../pkg/network/spec';
import type { Endpoint } from '../../../pkg/network/store';
import { etcdConfFromArgs, group, leaf, str, table, value, type Ctx } from '../common';
import { meshRunDir } from './mesh';

export function commands(ctx: Ctx): CommandModule[] {
  return [group(ctx, ['dns'], {
    describe: 'the names knitd answers on every node (containers, aliases, services of each network)',
    commands: () => [
      leaf(ctx, ['dns', 'ls'], {
        command: 'ls',
        describe: 'every record and where it came from: a container on a node, an alias, a service',
        options: {
          network: { type: 'string', requiresArg: true, describe: 'only this network\'s records' },
          json: { type: 'boolean', describe: 'the records as JSON' },
          'run-dir': value(`on the mesh: the local knitd's --run-dir (default ${DEFAULT_RUN_DIR})`),
        },
        run: async (a, c) => {
          const show = (networks: Network[], endpoints: Endpoint[], svcs: Service[]): string => {
            const only = str(a, 'network');
            if (only && !networks.some((n) => n.name === only)) throw new SpecError(`no network named ${only} (knitctl network ls lists them)`);
            const t = new RecordTable();
            t.resync(networks, endpoints, svcs);
            const records = t.records(only);
            if (a.json) return JSON.stringify(records, null, 2);
            return table(['NETWORK', 'NAME', 'ADDRESS', 'SOURCE'], records.map((r) => [r.network, r.name, r.address, describeSource(r.source)]));
          };
          const dir = meshRunDir(a, c.env);
          if (dir) {
            const m = new MeshNetworkClient(dir);
            return show((await m.list()).networks, (await m.endpoints()).endpoints, await new MeshServiceClient(dir).list());
          }
          const conf = etcdConfFromArgs(a, c.env);
          const client = new EtcdClient(conf);
          try {
            const s = new NetworkStore(client, conf.prefix);
            const [{ networks }, { endpoints }] = [await s.list(), await s.endpoints()];
            const sp = servicesPrefix(conf.prefix);
            const svcs = (await client.range({ key: sp, rangeEnd: prefixEnd(sp) })).kvs.map((kv) => decodeService(kv.value)).filter((x): x is Service => !!x);
            return show(networks, endpoints, svcs);
          } finally {
            client.close();
          }
        },
      }),
    ],
  })];
}
