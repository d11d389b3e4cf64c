// Every knit plugin by executable name: the one list that knitd serves from and that the tests hold
// the executables (cmd/<name>/main.ts) to. Entries load lazily, so a reader of the list pays only for
// the plugins it runs (knit-etcd-ipam brings the etcd client).
import type { Plugin } from '../pkg/cni/skel';

export type PluginKind = 'main' | 'ipam';

export interface PluginEntry {
  /** The executable's name, also what knit-client sends knitd. */
  readonly name: string;
  readonly kind: PluginKind;
  /** The folder holding its verbs and config. */
  readonly home: string;
  load(): Plugin;
}

export const PLUGINS: readonly PluginEntry[] = [
  { name: 'knit-bridge', kind: 'main', home: 'plugins/main/bridge', load: () => (require('./main/bridge/plugin') as typeof import('./main/bridge/plugin')).bridge },
  { name: 'knit-macvlan', kind: 'main', home: 'plugins/main/macvlan', load: () => (require('./main/macvlan/plugin') as typeof import('./main/macvlan/plugin')).macvlan },
  { name: 'knit-l2overlay', kind: 'main', home: 'plugins/main/l2overlay', load: () => (require('./main/l2overlay/plugin') as typeof import('./main/l2overlay/plugin')).l2overlay },
  { name: 'knit-overlay', kind: 'main', home: 'plugins/main/overlay', load: () => (require('./main/overlay/plugin') as typeof import('./main/overlay/plugin')).overlay },
  { name: 'knit-host-local', kind: 'ipam', home: 'plugins/ipam/host-local', load: () => (require('../pkg/ipam/host-local') as typeof import('../pkg/ipam/host-local')).hostLocal },
  { name: 'knit-etcd-ipam', kind: 'ipam', home: 'plugins/ipam/etcd', load: () => (require('../pkg/ipam/etcd-ipam') as typeof import('../pkg/ipam/etcd-ipam')).etcdIpam },
];

/** Every plugin, loaded: what knitd serves. */
export function loadAll(): ReadonlyMap<string, Plugin> {
  return new Map(PLUGINS.map((e) => [e.name, e.load()]));
}
