// knitd's Prometheus metrics and health endpoint (node:http only):
//   GET /metrics   text exposition format 0.0.4
//   GET /healthz   200 "ok" once the overlay agent holds a lease and reconciled recently, else 503
import * as http from 'node:http';
import type { AgentStatus } from './agent';
import type { IpamGcStats } from './ipam-gc';
import type { ServicesStatus } from './services';

export interface MetricsSource {
  status(): AgentStatus | null;
  resyncSec: number;
  /** The IPAM pod GC's counters, when it runs. */
  ipamGc?: () => IpamGcStats;
  /** The service load balancer's counters (named networks on etcd). */
  services?: () => ServicesStatus;
  /** The resolver's counters (pkg/dns), when it runs. */
  dns?: () => DnsMetrics;
}

/** What the resolver reports (pkg/dns/agent.ts ResolverStats), kept structural so metrics.ts loads no DNS code. */
export interface DnsMetrics {
  queries: number;
  answers: Record<string, number>;
  forwarded: number;
  upstreamFailures: number;
  dropped: number;
  listeners: number;
  bindErrors: number;
  names: number;
  records: number;
}

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export function renderMetrics(src: MetricsSource): string {
  const st = src.status();
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string, samples: Array<[string, number]>): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) lines.push(`${name}${labels} ${v}`);
  };
  const peers = st?.peers ?? [];
  metric('knit_overlay_lease_info', 'gauge', 'The subnet this node holds (1 while held).', st?.subnet ? [[`{node="${esc(st.nodeName)}",subnet="${esc(st.subnet)}",backend="${esc(st.backend ?? '')}"}`, 1]] : []);
  metric('knit_overlay_peers', 'gauge', 'Peer leases known from the datastore.', [['', peers.length]]);
  metric('knit_overlay_peers_programmed', 'gauge', 'Peers whose route (and neighbour/FDB entries) are programmed.', [['', peers.filter((p) => p.programmed).length]]);
  metric('knit_overlay_reconcile_duration_seconds', 'summary', 'Time to reconcile the datapath with the leases.', [['_count', st?.syncs ?? 0], ['_sum', st?.syncSeconds ?? 0]]);
  const last = st?.lastSync?.report;
  metric('knit_overlay_last_reconcile_changes', 'gauge', 'Entries changed by the last reconcile.', last ? [['{op="added"}', last.added], ['{op="updated"}', last.updated], ['{op="removed"}', last.removed]] : []);
  metric('knit_overlay_errors_total', 'counter', 'Errors of the overlay agent (datastore, reconcile, masquerade).', [['', st?.errors ?? 0]]);
  const gc = src.ipamGc?.();
  if (gc) {
    metric('knit_ipam_gc_passes_total', 'counter', 'Passes of the knit-etcd-ipam pod GC.', [['', gc.passes]]);
    metric('knit_ipam_gc_released_total', 'counter', 'Addresses the pod GC released (their pod was gone).', [['', gc.released]]);
    metric('knit_ipam_gc_pending', 'gauge', 'Stale attachments waiting for the confirming pass.', [['', gc.pending]]);
    metric('knit_ipam_gc_errors_total', 'counter', 'Pod GC passes that failed for a network (etcd or the API unreachable).', [['', gc.errors]]);
  }
  const svc = src.services?.();
  if (svc) {
    metric('knit_services_balanced', 'gauge', 'Service VIPs balanced on this node (one nftables map each).', [['', svc.services]]);
    metric('knit_services_backends', 'gauge', 'Backends in the maps of those services.', [['', svc.backends]]);
    metric('knit_services_errors_total', 'counter', 'Errors of the service load balancer (etcd, nft, routes).', [['', svc.errors]]);
  }
  const dns = src.dns?.();
  if (dns) {
    metric('knit_dns_queries_total', 'counter', 'DNS queries received on the gateway addresses.', [['', dns.queries]]);
    metric('knit_dns_answers_total', 'counter', 'Queries knit answered itself, by response code.', Object.entries(dns.answers).map(([k, v]) => [`{rcode="${esc(k)}"}`, v]));
    metric('knit_dns_forwarded_total', 'counter', 'Queries forwarded to the node\'s upstream resolvers.', [['', dns.forwarded]]);
    metric('knit_dns_upstream_failures_total', 'counter', 'Forwarded queries no upstream answered (SERVFAIL sent).', [['', dns.upstreamFailures]]);
    metric('knit_dns_malformed_dropped_total', 'counter', 'Malformed packets dropped unanswered.', [['', dns.dropped]]);
    metric('knit_dns_listeners', 'gauge', 'Gateway addresses the resolver listens on.', [['', dns.listeners]]);
    metric('knit_dns_records', 'gauge', 'Address records of all names on all networks.', [['', dns.records]]);
  }
  return lines.join('\n') + '\n';
}

export function healthy(src: MetricsSource, now = Date.now()): { ok: boolean; why: string } {
  const st = src.status();
  if (!st?.subnet) return { ok: false, why: 'no subnet lease yet' };
  const at = st.lastSync ? Date.parse(st.lastSync.at) : 0;
  if (!at) return { ok: false, why: 'not reconciled yet' };
  if (now - at > 3 * src.resyncSec * 1000) return { ok: false, why: `last reconcile ${Math.round((now - at) / 1000)} s ago` };
  return { ok: true, why: 'ok' };
}

/** Serves /metrics and /healthz on addr ("HOST:PORT" or ":PORT"). */
export function serveMetrics(addr: string, src: MetricsSource): Promise<http.Server> {
  const i = addr.lastIndexOf(':');
  const host = i > 0 ? addr.slice(0, i).replace(/^\[|\]$/g, '') : undefined;
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) return Promise.reject(new Error(`invalid --metrics-addr ${addr}: HOST:PORT or :PORT`));
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(renderMetrics(src));
    } else if (req.url === '/healthz') {
      const h = healthy(src);
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(`${h.why}\n`);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); server.unref(); resolve(server); });
  });
}
