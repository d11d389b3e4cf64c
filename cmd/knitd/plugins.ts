// The plugins knitd serves in-process, by executable name (what knit-client sends).
import type { Plugin } from '../../pkg/cni/skel';
import { hostLocal } from '../../plugins/ipam/host-local/plugin';
import { bridge } from '../knit-bridge/plugin';
import { macvlan } from '../knit-macvlan/plugin';
import { overlay } from '../knit-overlay/plugin';

export const PLUGINS: ReadonlyMap<string, Plugin> = new Map<string, Plugin>([
  ['knit-bridge', bridge],
  ['knit-host-local', hostLocal],
  ['knit-macvlan', macvlan],
  ['knit-overlay', overlay],
]);
