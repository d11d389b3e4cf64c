// Running a conflist's chain as a runtime does (libcni's AddNetworkList/DelNetworkList, SPEC.md
// section 5): ADD each plugin in order with the previous one's result as prevResult, DEL in
// reverse with the cached result; every plugin gets the list's name and cniVersion and, in
// runtimeConfig, the capability arguments it declares in `capabilities`. For knitctl attach/detach.
import { CniError, Code, asCniError } from './errors';
import { execPlugin, type ExecOptions } from './exec';
import { compareVersions, isSupportedVersion } from './version';
import type { ConfList, PluginConf } from './conflist';
import type { Env } from './env';
import type { Result } from './types';

/** The invocation's parameters (libcni's RuntimeConf). */
export interface RuntimeConf {
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS pairs, in order. */
  args?: Array<[string, string]>;
  /** Capability arguments by capability name (ips, mac, aliases, portMappings...). */
  capabilityArgs?: Record<string, unknown>;
}

export interface ChainOptions extends ExecOptions {
  /** CNI_PATH directories. */
  paths: readonly string[];
}

/** CNI_ARGS as libcni writes it: "K=V;K2=V2" (empty when none). */
export function cniArgsString(args: ReadonlyArray<readonly [string, string]> = []): string {
  return args.map(([k, v]) => `${k}=${v}`).join(';');
}

/** The CNI_* environment of one call (CNI_COMMAND is set by execPlugin). */
export function chainEnv(rt: RuntimeConf, paths: readonly string[]): Env {
  return {
    CNI_CONTAINERID: rt.containerId,
    CNI_NETNS: rt.netns,
    CNI_IFNAME: rt.ifName,
    CNI_ARGS: cniArgsString(rt.args),
    CNI_PATH: paths.join(':'),
  };
}

/** The capability arguments a plugin declares (capabilities[k] === true), or undefined for none. */
export function runtimeConfigFor(plugin: PluginConf, capabilityArgs: Record<string, unknown> = {}): Record<string, unknown> | undefined {
  const caps = plugin.capabilities;
  if (typeof caps !== 'object' || caps === null) return undefined;
  const rc: Record<string, unknown> = {};
  for (const [k, on] of Object.entries(caps)) if (on === true && k in capabilityArgs) rc[k] = capabilityArgs[k];
  return Object.keys(rc).length ? rc : undefined;
}

/** The capabilities any plugin of the list declares: what runtimeConfig can carry to it. */
export function capabilitiesOf(list: ConfList): Set<string> {
  const out = new Set<string>();
  for (const p of list.plugins) {
    const caps = p.capabilities;
    if (typeof caps === 'object' && caps !== null) for (const [k, on] of Object.entries(caps)) if (on === true) out.add(k);
  }
  return out;
}

/**
 * One plugin's stdin, as libcni's buildOneConfig makes it: the plugin's object with the list's
 * name and cniVersion, prevResult (1.x form here; put in the list's version when sent) and
 * runtimeConfig replacing any the file had.
 */
export function pluginConf(list: ConfList, plugin: PluginConf, prevResult: Result | undefined, rt: RuntimeConf): Record<string, unknown> {
  const out: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (prevResult) out.prevResult = prevResult;
  else delete out.prevResult;
  const rc = runtimeConfigFor(plugin, rt.capabilityArgs);
  if (rc) out.runtimeConfig = rc;
  return out;
}

function describe(p: PluginConf, i: number, n: number): string {
  return `plugin ${JSON.stringify(p.type)} (${i + 1} of ${n})`;
}

/**
 * ADD of the whole chain; the last plugin's result in 1.x form. When a plugin fails, DEL runs for
 * the whole chain in reverse (as a runtime does after a failed ADD, without a prevResult) so
 * nothing is left behind, and the ADD's error is thrown naming the plugin.
 */
export async function addChain(list: ConfList, rt: RuntimeConf, opts: ChainOptions): Promise<Result> {
  const env = chainEnv(rt, opts.paths);
  let result: Result | undefined;
  const n = list.plugins.length;
  for (let i = 0; i < n; i++) {
    const p = list.plugins[i]!;
    try {
      result = await execPlugin(p.type, 'ADD', pluginConf(list, p, result, rt), env, opts.paths, opts);
      if (!result) throw new CniError(Code.DelegateFailed, 'returned no result');
    } catch (e) {
      const err = asCniError(e);
      const cleanup = await delChain(list, rt, opts, undefined, { keepGoing: true }).then(() => '', (d: Error) => `; the DEL that followed also failed: ${d.message}`);
      throw new CniError(err.code, `${describe(p, i, n)} failed (add): ${err.message}${cleanup}`, err.details);
    }
  }
  return result!;
}

export interface DelOptions {
  /** Run every plugin's DEL even after one failed (cleanup); the first error is thrown at the end. */
  keepGoing?: boolean;
}

/**
 * DEL of the whole chain in reverse order. `prevResult` (the cached ADD result) is passed from
 * spec 0.4.0 on, as libcni does. Stops at the first failure (so the caller keeps its cache and can
 * retry), unless keepGoing.
 */
export async function delChain(list: ConfList, rt: RuntimeConf, opts: ChainOptions, prevResult?: Result, o: DelOptions = {}): Promise<void> {
  const env = chainEnv(rt, opts.paths);
  const prev = prevResult && isSupportedVersion(list.cniVersion) && compareVersions(list.cniVersion, '0.4.0') >= 0 ? prevResult : undefined;
  const n = list.plugins.length;
  let first: CniError | undefined;
  for (let i = n - 1; i >= 0; i--) {
    const p = list.plugins[i]!;
    try {
      await execPlugin(p.type, 'DEL', pluginConf(list, p, prev, rt), env, opts.paths, opts);
    } catch (e) {
      const err = asCniError(e);
      const named = new CniError(err.code, `${describe(p, i, n)} failed (delete): ${err.message}`, err.details);
      if (!o.keepGoing) throw named;
      first ??= named;
    }
  }
  if (first) throw first;
}
