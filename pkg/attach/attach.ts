// `knitctl attach` / `detach` (what pipework and `weave attach` did): run a network's conflist for a
// container that is already running, and record it in libcni's result cache so that runtimes'
// DEL and GC treat it as any other attachment. ADD goes through the list the config directory
// holds today; DEL through the list cached at ADD (as podman does), so a network edited or
// removed since can still be detached.
import { CniError, Code } from '../cni/errors';
import { IP_VALID, MAC_VALID, normalizeMac, parseStaticIP } from '../cni/args';
import { addChain, capabilitiesOf, delChain, type RuntimeConf } from '../cni/chain';
import { cacheEntry, cachedConfList, listCached, removeCached, writeCached, type CachedAttachment } from '../cni/cache';
import { findConfList, readConfDir, type ConfList } from '../cni/conflist';
import { ifNameProblem } from '../cni/env';
import type { ExecOptions } from '../cni/exec';
import { convertResult, parseResult } from '../cni/result';
import type { Result } from '../cni/types';
import { interfacesOf, nextFreeIfName, resolveTarget, TargetError, type PodmanOptions, type Target } from './target';

/** Where networks, plugins and the cache are (knitctl's --cni-conf-dir, --cni-path, --cni-cache-dir). */
export interface AttachEnv {
  confDir: string;
  cniPath: string[];
  /** libcni's cache directory (results/ under it). */
  cacheDir: string;
  podman?: PodmanOptions;
  exec?: ExecOptions;
}

export interface AttachRequest {
  network: string;
  target: string;
  /** ADDR/LEN (or ADDR), the `ips` capability. */
  ips?: string[];
  ifName?: string;
  mac?: string;
  aliases?: string[];
}

export interface Attached {
  network: string;
  target: Target;
  ifName: string;
  /** The chain's result, 1.x form. */
  result: Result;
  /** The conflist file the chain came from. */
  conflist: string | undefined;
  cacheFile: string;
}

/**
 * An argument that cannot work, naming the argument, the value and what is valid. `usage`: a
 * mistake of form (exit code 2 in knitctl) rather than of the node's state (exit code 1).
 */
export class AttachError extends Error {
  constructor(message: string, readonly usage = false) {
    super(message);
  }
}

function checkForm(r: { ips?: string[]; ifName?: string; mac?: string; aliases?: string[] }): void {
  for (const ip of r.ips ?? []) if (!parseStaticIP(ip, '--ip')) throw new AttachError(`invalid --ip ${JSON.stringify(ip)}: ${IP_VALID}`, true);
  if (r.ifName !== undefined && ifNameProblem(r.ifName)) {
    throw new AttachError(`invalid --ifname ${JSON.stringify(r.ifName)}: an interface name of 1-15 bytes without '/', ':' or whitespace`, true);
  }
  if (r.mac !== undefined && !normalizeMac(r.mac)) throw new AttachError(`invalid --mac ${JSON.stringify(r.mac)}: ${MAC_VALID}`, true);
  for (const a of r.aliases ?? []) if (!a || /\s/.test(a)) throw new AttachError(`invalid --alias ${JSON.stringify(a)}: a name without whitespace`, true);
}

/** The network's list from the config directory, or an error listing the networks there. */
export function networkConf(confDir: string, network: string): ConfList {
  const d = readConfDir(confDir);
  const list = findConfList(d, network);
  if (list) return list;
  const names = [...new Set(d.lists.map((l) => l.name))].sort();
  // Broken conflists may be the one meant; stray .json files in the directory are not worth naming.
  const broken = d.skipped.filter((s) => s.file.endsWith('.conflist'));
  const skipped = broken.length ? `; skipped as unreadable: ${broken.map((s) => `${s.file} (${s.why})`).join(', ')}` : '';
  throw new AttachError(`unknown NETWORK ${JSON.stringify(network)}: ${names.length ? `the networks in ${confDir} are ${names.join(', ')}` : `${confDir} holds no network config`}${skipped}`);
}

/** How long an attach/detach waits for another one on the node. */
export const LOCK_TIMEOUT_MS = 30_000;

/**
 * One attach or detach at a time on the node: two at once on one target would pick the same
 * ethN, and the loser's cleanup DEL would remove the winner's attachment (same container ID and
 * interface). flock(2) beside libcni's results/ (never inside it: runtimes read every file there);
 * the kernel drops it if knitctl dies. An admin command, so a node-wide lock costs nothing.
 */
async function locked<T>(cacheDir: string, fn: () => Promise<T>): Promise<T> {
  const fs = require('node:fs') as typeof import('node:fs');
  const { native } = require('../netlink/native') as typeof import('../netlink/native');
  const dir = cacheDir.replace(/\/+$/, '');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = `${dir}/knit-attach.lock`;
  let fd: number;
  try {
    fd = native().flock(file, LOCK_TIMEOUT_MS);
  } catch (e) {
    if ((e as { errno?: number }).errno === 110) throw new CniError(Code.TryAgainLater, `another knitctl attach/detach has held ${file} for ${LOCK_TIMEOUT_MS / 1000} s; retry`);
    throw e;
  }
  try {
    return await fn();
  } finally {
    native().funlock(fd);
  }
}

/** Fails when the target is the namespace knitctl runs in: the host's own, not a container's. */
function notOwnNetns(target: Target): void {
  const fs = require('node:fs') as typeof import('node:fs');
  if (fs.statSync(target.netns, { bigint: true }).ino === fs.statSync('/proc/self/ns/net', { bigint: true }).ino) {
    throw new AttachError(`invalid TARGET ${JSON.stringify(target.input)}: ${target.label} is in this host's own network namespace, not a container's; TARGET is a container's netns, PID or name`);
  }
}

/** ADD of NETWORK's chain for TARGET, recorded in the cache; a failure leaves nothing behind. */
export async function attach(req: AttachRequest, env: AttachEnv): Promise<Attached> {
  checkForm(req);
  return locked(env.cacheDir, () => attachLocked(req, env));
}

async function attachLocked(req: AttachRequest, env: AttachEnv): Promise<Attached> {
  const list = networkConf(env.confDir, req.network);
  const caps = capabilitiesOf(list);
  const need: Array<[unknown, string, string]> = [[req.ips?.length, 'ips', '--ip'], [req.mac, 'mac', '--mac'], [req.aliases?.length, 'aliases', '--alias']];
  for (const [given, cap, flag] of need) {
    if (given && !caps.has(cap)) {
      throw new AttachError(`${flag} cannot reach network ${req.network}: no plugin of ${list.file ?? 'its conflist'} declares the "${cap}" capability (add "capabilities": {"${cap}": true} to the plugin that takes it)`);
    }
  }
  const target = await resolveTarget(req.target, env.podman);
  notOwnNetns(target);
  const existing = listCached(env.cacheDir, req.network, target.containerId);
  if (existing.length && (req.ifName === undefined || existing.some((e) => e.ifName === req.ifName))) {
    const ifs = existing.map((e) => e.ifName).join(', ');
    throw new AttachError(`${target.label} is already attached to ${req.network} (as ${ifs}): knitctl detach ${req.network} ${req.target}${req.ifName ? ` --ifname ${req.ifName}` : ''} first, or give another --ifname for a second interface`);
  }
  const present = interfacesOf(target.netns);
  if (req.ifName !== undefined && present.includes(req.ifName)) {
    throw new AttachError(`invalid --ifname ${JSON.stringify(req.ifName)}: ${target.label} already has an interface of that name (it has ${present.join(', ')}); e.g. --ifname ${nextFreeIfName(present)}`);
  }
  const ifName = req.ifName ?? nextFreeIfName(present);
  const capabilityArgs: Record<string, unknown> = {};
  if (req.ips?.length) capabilityArgs.ips = req.ips;
  if (req.mac) capabilityArgs.mac = req.mac;
  // CONVENTIONS.md: aliases keyed by network name, as podman sends them.
  if (req.aliases?.length) capabilityArgs.aliases = { [req.network]: req.aliases };
  // What podman passes with every attachment: the container's name (knit-l2overlay records it on
  // the endpoint; network inspect shows it), and leave to plugins that do not know the key.
  const args: Array<[string, string]> = target.name ? [['IgnoreUnknown', '1'], ['K8S_POD_NAME', target.name]] : [];
  const rt: RuntimeConf = { containerId: target.containerId, netns: target.netns, ifName, args, capabilityArgs };
  const opts = { ...env.exec, paths: env.cniPath };
  const result = await addChain(list, rt, opts);
  let cacheFile: string;
  try {
    cacheFile = writeCached(env.cacheDir, cacheEntry(list, { containerId: rt.containerId, ifName, netns: rt.netns, args, capabilityArgs, result: convertResult(result, list.cniVersion) }));
  } catch (e) {
    // Unrecorded, nothing could ever DEL it: undo.
    await delChain(list, rt, opts, result, { keepGoing: true }).catch(() => undefined);
    throw new Error(`attached, but writing libcni's cache in ${env.cacheDir} failed, so it was undone: ${(e as Error).message}`);
  }
  return { network: req.network, target, ifName, result, conflist: list.file, cacheFile };
}

export interface DetachRequest {
  network: string;
  target: string;
  ifName?: string;
}

export interface Detached {
  network: string;
  /** Null when TARGET no longer exists and was found by its container ID in the cache. */
  target: Target | null;
  containerId: string;
  /** Interfaces whose cached attachment was deleted. */
  ifNames: string[];
  /** True when nothing was cached and --ifname asked for DEL with the network's current list. */
  uncachedDel: boolean;
}

/**
 * DEL of TARGET's attachments to NETWORK (the one of --ifname, else every one cached), each with
 * its cached list, args and result; the cache entry goes after a good DEL. Nothing cached: nothing
 * to do (a second detach is fine), unless --ifname asks for a DEL with today's list (a crash
 * between ADD and the cache write).
 */
export async function detach(req: DetachRequest, env: AttachEnv): Promise<Detached> {
  checkForm(req);
  return locked(env.cacheDir, () => detachLocked(req, env));
}

async function detachLocked(req: DetachRequest, env: AttachEnv): Promise<Detached> {
  const opts = { ...env.exec, paths: env.cniPath };
  let target: Target | null = null;
  let containerId: string;
  let netns: string | undefined;
  try {
    target = await resolveTarget(req.target, env.podman);
    containerId = target.containerId;
    netns = target.netns;
  } catch (e) {
    // A target that is gone (container removed, process exited): its container ID still names its cache entries.
    if (!(e instanceof TargetError)) throw e;
    const cached = listCached(env.cacheDir, req.network);
    if (!cached.some((c) => c.containerId === req.target)) {
      const ids = [...new Set(cached.map((c) => c.containerId))];
      throw new AttachError(`${e.message}${ids.length ? ` (a target that is gone: give its container ID; ${req.network}'s cached attachments are ${ids.join(', ')})` : ''}`);
    }
    containerId = req.target;
  }
  let entries = listCached(env.cacheDir, req.network, containerId);
  if (req.ifName !== undefined) entries = entries.filter((e) => e.ifName === req.ifName);
  if (!entries.length) {
    const list = networkConf(env.confDir, req.network); // a typo in NETWORK is an error even with nothing to do
    if (req.ifName === undefined || !target) return { network: req.network, target, containerId, ifNames: [], uncachedDel: false };
    await delChain(list, { containerId, netns: target.netns, ifName: req.ifName }, opts);
    return { network: req.network, target, containerId, ifNames: [], uncachedDel: true };
  }
  const done: string[] = [];
  for (const e of entries) {
    await delCached(e, netns ?? e.netns ?? '', env, opts);
    done.push(e.ifName);
  }
  return { network: req.network, target, containerId, ifNames: done, uncachedDel: false };
}

async function delCached(e: CachedAttachment, netns: string, env: AttachEnv, opts: { paths: string[] } & ExecOptions): Promise<void> {
  const list = cachedConfList(e);
  let prev: Result | undefined;
  try {
    prev = e.result ? parseResult(e.result, { path: 'cached result', version: list.cniVersion }) : undefined;
  } catch (err) {
    if (!(err instanceof CniError)) throw err;
    prev = undefined; // a result knit cannot read is no reason to keep the attachment
  }
  await delChain(list, { containerId: e.containerId, netns, ifName: e.ifName, args: e.cniArgs ?? [], capabilityArgs: e.capabilityArgs ?? {} }, opts, prev);
  removeCached(env.cacheDir, e.networkName, e.containerId, e.ifName);
}
