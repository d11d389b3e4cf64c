// The backends by name (flannel's backend.Register): each backend's file registers its factory
// when loaded; index.ts loads them all. The agent and the network config know backends only
// through here, so a new backend is one new file and one line in index.ts.
import type { Logger } from '../../cni/log';
import type { Netlink } from '../../netlink';
import type { Backend, BackendConfig, BackendOptions } from './backend';

export interface BackendFactory {
  /**
   * Validates the network config's `backend` object (its type is this backend's) and returns it
   * with defaults filled in; errors name the key, the value and what is valid (configError).
   */
  parseConfig(b: Record<string, unknown>): BackendConfig;
  create(cfg: BackendConfig, opts: BackendOptions): Backend;
  /**
   * Removes what this backend leaves in the kernel (vxlan: its devices), for when another backend
   * takes the node over; returns what it removed.
   */
  removeLeftovers?(nl: Netlink, log?: Logger): string[];
}

const factories = new Map<string, BackendFactory>();

/** Registers a backend under its network config type; returns the undo (tests). */
export function register(name: string, factory: BackendFactory): () => void {
  if (factories.has(name)) throw new Error(`backend ${JSON.stringify(name)} is registered twice`);
  factories.set(name, factory);
  return () => { if (factories.get(name) === factory) factories.delete(name); };
}

/** The registered names, in registration order. */
export function names(): string[] {
  return [...factories.keys()];
}

export function has(name: unknown): name is string {
  return typeof name === 'string' && factories.has(name);
}

export function get(name: string): BackendFactory {
  const f = factories.get(name);
  if (!f) throw new Error(`unknown backend type ${JSON.stringify(name)}: ${names().join(' or ')}`);
  return f;
}

export function newBackend(cfg: BackendConfig, opts: BackendOptions = {}): Backend {
  return get(cfg.type).create(cfg, opts);
}

/** Every other backend's leftovers removed (a node whose backend changed); what was removed. */
export function removeOtherBackends(nl: Netlink, keep: string, log?: Logger): string[] {
  const out: string[] = [];
  for (const [name, f] of factories) if (name !== keep && f.removeLeftovers) out.push(...f.removeLeftovers(nl, log));
  return out;
}
