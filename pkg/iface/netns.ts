// Opening the container's network namespace, with the two answers the verbs need: ADD and
// CHECK must have it (a path that is none is the runtime's mistake: code 4 naming CNI_NETNS);
// DEL must go on without it (the runtime may tear the sandbox down first; SPEC.md "DEL"), so a
// namespace that is gone in any way (removed, unmounted, not a namespace) is simply absent.
import { CniError, Code, show } from '../cni/errors';
import { Netlink, isNotNetns } from '../netlink';

/** ADD/CHECK: a handle in the container's namespace, or code 4 naming the variable. */
export function openPodNetns(netns: string, variable = 'CNI_NETNS'): Netlink {
  try {
    return Netlink.open(netns);
  } catch (e) {
    if (isNotNetns(e)) throw notANetns(netns, variable, e as Error);
    throw e;
  }
}

/** DEL/GC: a handle in the namespace, or null when it is gone (or was never given). */
export function openPodNetnsIfPresent(netns: string | undefined): Netlink | null {
  if (!netns) return null;
  try {
    return Netlink.open(netns);
  } catch (e) {
    if (isNotNetns(e)) return null;
    throw e;
  }
}

export function notANetns(netns: string, variable: string, cause: Error): CniError {
  const code = (cause as { code?: string }).code;
  const why = code === 'ENOENT' ? 'no such file' : code === 'EINVAL' ? 'not a network namespace' : code ?? cause.message;
  return new CniError(Code.InvalidEnvironment, `invalid ${variable} ${show(netns)}: ${why}; the path of the container's network namespace (e.g. /run/netns/NAME or /proc/PID/ns/net)`);
}
