// knitctl service: swarm's VIP services on named overlay networks (docs/services.md):
//   service create NAME --network NET [--vip IP] [--port PROTO:PORT]...
//   service ls [--json] [-q] | service inspect NAME... [--network NET] | service rm NAME... [--network NET]
// On etcd, or on the mesh through the local knitd (<run-dir>/mesh.sock) when its socket is there
// and no etcd is given (docs/services.md "On the mesh").
import type { CommandModule } from 'yargs';
import { EtcdClient } from '../../../pkg/etcd';
import { SpecError } from '../../../pkg/network/spec';
import { inspectService, serviceRows } from '../../../pkg/service/inspect';
import { checkServiceName, parsePorts } from '../../../pkg/service/spec';
import { ServiceStore } from '../../../pkg/service/store';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';
import { MeshServiceClient, type ServiceCatalog } from '../../../pkg/mesh/service-client';
import { UsageError, etcdConfFromArgs, group, leaf, str, table, value, type Ctx, type Flags } from '../common';
import { meshRunDir } from './mesh';

const list = (v: unknown): string[] => (v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String));

export function commands(ctx: Ctx): CommandModule[] {
  const networkFlag = value('the network of the services named (default: any network)');
  const runDir = { 'run-dir': value(`on the mesh: the local knitd's --run-dir (default ${DEFAULT_RUN_DIR})`) };
  return [group(ctx, ['service'], {
    describe: 'services: a name on an overlay network with a virtual IP balanced over the containers holding that name (swarm\'s --endpoint-mode vip)',
    commands: () => [
      leaf(ctx, ['service', 'create'], {
        command: 'create <name>',
        describe: 'create a service: its VIP is reserved from the network; knitd on every node balances it over the containers named or aliased <name>',
        positionals: { name: { type: 'string', describe: 'the service\'s name (containers with this name or --network-alias are its backends)' } },
        options: {
          network: value('the overlay network (required)'),
          vip: value('the virtual IP (default: one from the network\'s addresses)'),
          port: { type: 'string', array: true, nargs: 1, requiresArg: true, describe: 'PROTO:PORT balanced (tcp:80, udp:53; default: every port)' },
          ...runDir,
        },
        builder: (y) => y.example('knitctl service create api --network app --port tcp:80', 'api resolves to a VIP of app; connections to VIP:80 reach every container aliased api'),
        run: (a, c) => {
          const network = str(a, 'network');
          if (!network) throw new UsageError('--network is required: the overlay network of the service');
          // What needs no etcd is checked first (usage errors, exit code 2).
          try { checkServiceName(String(a.name)); parsePorts(list(a.port)); } catch (e) { throw new UsageError((e as Error).message); }
          return withServices(a, c.env, async (s) => {
            const svc = await s.create({ name: String(a.name), network, ...(str(a, 'vip') !== undefined ? { vip: str(a, 'vip')! } : {}), ports: list(a.port) });
            return svc.id;
          });
        },
      }),
      leaf(ctx, ['service', 'ls'], {
        command: 'ls',
        describe: 'the services with their VIP, ports and number of backends',
        options: { json: { type: 'boolean', describe: 'the services as JSON' }, quiet: { alias: 'q', type: 'boolean', describe: 'names only' }, ...runDir },
        run: (a, c) => withServices(a, c.env, async (s) => {
          const services = await s.list();
          if (a.json) return JSON.stringify(services, null, 2);
          if (a.quiet) return services.map((x) => x.name).join('\n');
          const [head, ...rows] = serviceRows(services, (await s.networks.endpoints()).endpoints);
          return table(head!, rows);
        }),
      }),
      leaf(ctx, ['service', 'inspect'], {
        command: 'inspect <names..>',
        describe: 'services as JSON: the VIP, ports, backends on every node with their addresses, each node\'s load-balancer address',
        positionals: { names: { type: 'string', array: true } },
        options: { network: networkFlag, ...runDir },
        run: (a, c) => withServices(a, c.env, async (s) => {
          const out = [];
          for (const name of list(a.names)) {
            for (const svc of await s.find(name, str(a, 'network'))) out.push(inspectService(svc, (await s.networks.endpoints(svc.network)).endpoints));
          }
          return JSON.stringify(out, null, 2);
        }),
      }),
      leaf(ctx, ['service', 'rm'], {
        command: 'rm <names..>',
        describe: 'remove services and free their VIPs; every node removes their map within a second',
        positionals: { names: { type: 'string', array: true } },
        options: { network: networkFlag, ...runDir },
        run: (a, c) => withServices(a, c.env, async (s) => {
          const done: string[] = [];
          const failed: string[] = [];
          for (const name of list(a.names)) {
            try {
              const found = await s.find(name, str(a, 'network'));
              if (found.length > 1) throw new SpecError(`service ${name} exists on networks ${found.map((x) => x.network).join(', ')}: say which with --network`);
              await s.remove(found[0]!.network, name);
              done.push(name);
            } catch (e) { if (!(e instanceof SpecError)) throw e; failed.push(e.message); }
          }
          if (failed.length) throw new SpecError([...done.map((d) => `removed ${d}`), ...failed].join('\n'));
          return done.join('\n');
        }),
      }),
    ],
  })];
}

async function withServices<T>(a: Flags, env: NodeJS.ProcessEnv, fn: (s: ServiceCatalog) => Promise<T>): Promise<T> {
  const dir = meshRunDir(a, env);
  if (dir) return fn(new MeshServiceClient(dir));
  const conf = etcdConfFromArgs(a, env);
  const client = new EtcdClient(conf);
  try { return await fn(new ServiceStore(client, conf.prefix)); } finally { client.close(); }
}
