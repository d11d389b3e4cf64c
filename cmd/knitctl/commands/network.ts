// knitctl network: Docker-style named networks (docs/named-networks.md), stored in etcd for every node, or on the mesh
// through the local knitd (<run-dir>/mesh.sock, docs/mesh.md) when its socket is there and no etcd is given:
//   network create [-d DRIVER] [--subnet CIDR]... [--gateway IP]... [--ip-range CIDR]...
//                  [--aux-address NAME=IP]... [-o KEY=VALUE]... [--label K=V]... [--internal] [--ipv6] NAME
//   network ls [--json] | network inspect NAME... | network rm NAME...
// Hidden: the deprecated `network set FILE` / `network get`, the pod network's cluster config, now
// `pod-network set/get` (commands/pod-network.ts): they still work, with one warning line on stderr.
import type { CommandModule, Options } from 'yargs';
import { EtcdClient } from '../../../pkg/etcd';
import { inspect, lsRows } from '../../../pkg/network/inspect';
import { DRIVERS, SpecError, checkName } from '../../../pkg/network/spec';
import { MeshNetworkClient } from '../../../pkg/mesh/network-client';
import { NetworkStore, type NetworkCatalog } from '../../../pkg/network/store';
import { meshRunDir } from './mesh';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';
import { UsageError, etcdConfFromArgs, group, leaf, str, table, value, type Ctx, type Flags } from '../common';
import * as podNetwork from './pod-network';

/** On the mesh (no etcd): the local knitd's run dir, where its mesh.sock is. */
const runDir = { 'run-dir': value(`on the mesh: the local knitd's --run-dir (default ${DEFAULT_RUN_DIR})`) };

export function commands(ctx: Ctx): CommandModule[] {
  // Warned as soon as the alias is parsed: with its output, its error or its --help.
  const deprecated = (verb: string): void => {
    ctx.warnings.push(`'knitctl network ${verb}' is deprecated: use 'knitctl pod-network ${verb}' ('network' is for named networks)`);
  };
  return [group(ctx, ['network'], {
    describe: 'named networks, Docker\'s verbs: create once, use on every node (knitd renders each as a conflist)',
    commands: () => [
      leaf(ctx, ['network', 'create'], {
        command: 'create <name>',
        describe: 'create a network (validated against every other network: subnets, VNI, name)',
        positionals: { name: { type: 'string', describe: 'the network\'s name (what --network names)' } },
        options: {
          driver: { alias: 'd', type: 'string', requiresArg: true, describe: 'overlay (VXLAN across nodes), bridge (per node) or macvlan (default bridge)' },
          subnet: many('CIDR, one per subnet (default: a free /24 of 10.90.0.0/15)'),
          gateway: many('IP: the gateway of the subnet that contains it (default: its first address)'),
          'ip-range': many('CIDR inside a subnet: containers get addresses only from here'),
          'aux-address': many('NAME=IP: an address of a subnet never handed out'),
          opt: { ...many('KEY=VALUE: mtu, vni, parent (macvlan), macvlan_mode, isolation, dns; encrypted (overlay: ESP between nodes, Docker\'s --opt encrypted), cipher (with encrypted: aes-gcm or chacha20-poly1305)'), alias: 'o' },
          label: many('KEY=VALUE metadata'),
          internal: { type: 'boolean', describe: 'no egress through the node (no masquerade, no default route)' },
          ipv6: { type: 'boolean', describe: 'allow IPv6 subnets' },
          ...runDir,
        },
        builder: (y) => y.example('knitctl network create -d overlay --subnet 192.168.0.0/16 --gateway 192.168.0.100 --ip-range 192.168.1.0/24 --aux-address my-router=192.168.1.5 myoverlaynet', 'Docker\'s documented example')
          .example('knitctl network create -d overlay -o encrypted secure', 'VXLAN between nodes in ESP (docs/encryption.md)')
          .example('knitctl network create -d overlay -o encrypted -o cipher=chacha20-poly1305 secure2', 'the same with ChaCha20-Poly1305 (nodes without AES instructions)')
          .example('knitctl network create -d macvlan --subnet 172.16.86.0/24 --gateway 172.16.86.1 -o parent=eth0.50 macnet50', 'VLAN 50 on eth0'),
        run: (a, c) => {
          // What needs no other network is checked before any etcd request.
          const driver = str(a, 'driver') ?? 'bridge';
          if (!(DRIVERS as readonly string[]).includes(driver)) throw new UsageError(`invalid --driver ${JSON.stringify(driver)}: one of ${DRIVERS.join(', ')}`);
          try { checkName(String(a.name)); } catch (e) { throw new UsageError((e as Error).message); }
          return withNetworks(a, c.env, async (s) => (await s.create({
            name: String(a.name), driver, subnets: list(a.subnet), gateways: list(a.gateway), ipRanges: list(a['ip-range']),
            auxAddresses: list(a['aux-address']), opts: list(a.opt), labels: list(a.label), internal: !!a.internal, ipv6: !!a.ipv6,
          })).id);
        },
      }),
      leaf(ctx, ['network', 'ls'], {
        command: 'ls',
        describe: 'the networks, with their subnets and how many containers are attached',
        options: { json: { type: 'boolean', describe: 'the networks as JSON' }, quiet: { alias: 'q', type: 'boolean', describe: 'names only' }, ...runDir },
        run: (a, c) => withNetworks(a, c.env, async (s) => {
          const [{ networks }, { endpoints }] = [await s.list(), await s.endpoints()];
          if (a.json) return JSON.stringify(networks, null, 2);
          if (a.quiet) return networks.map((n) => n.name).sort().join('\n');
          const [headRow, ...rows] = lsRows(networks, endpoints);
          return table(headRow!, rows);
        }),
      }),
      leaf(ctx, ['network', 'inspect'], {
        command: 'inspect <names..>',
        describe: 'networks as JSON shaped like docker network inspect, with every container on every node',
        positionals: { names: { type: 'string', array: true } },
        options: runDir,
        run: (a, c) => withNetworks(a, c.env, async (s) => {
          const out = [];
          for (const name of list(a.names)) {
            const n = await s.get(name);
            if (!n) throw new SpecError(`no network named ${name} (knitctl network ls lists them)`);
            out.push(inspect(n, (await s.endpoints(name)).endpoints));
          }
          return JSON.stringify(out, null, 2);
        }),
      }),
      leaf(ctx, ['network', 'rm'], {
        command: 'rm <names..>',
        describe: 'remove networks (refused while containers are attached); every node removes its conflist and devices',
        positionals: { names: { type: 'string', array: true } },
        options: runDir,
        run: (a, c) => withNetworks(a, c.env, async (s) => {
          const done: string[] = [];
          const failed: string[] = [];
          for (const name of list(a.names)) {
            try { await s.remove(name); done.push(name); } catch (e) { if (!(e instanceof SpecError)) throw e; failed.push(e.message); }
          }
          if (failed.length) throw new SpecError([...done.map((d) => `removed ${d}`), ...failed].join('\n'));
          return done.join('\n');
        }),
      }),
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

/** A flag given any number of times: every value, in order. */
function many(describe: string): Options {
  return { type: 'string', array: true, nargs: 1, requiresArg: true, describe };
}

const list = (v: unknown): string[] => (v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String));

/** The networks in etcd, or on the mesh through the local knitd when its socket is there and no etcd is given. */
async function withNetworks<T>(a: Flags, env: NodeJS.ProcessEnv, fn: (s: NetworkCatalog) => Promise<T>): Promise<T> {
  const dir = meshRunDir(a, env);
  if (dir) return fn(new MeshNetworkClient(dir));
  const conf = etcdConfFromArgs(a, env);
  const client = new EtcdClient(conf);
  try { return await fn(new NetworkStore(client, conf.prefix)); } finally { client.close(); }
}
