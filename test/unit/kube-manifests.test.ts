// conf/kubernetes/knit.yaml checked without a cluster: every document parsed, least-privilege RBAC,
// the DaemonSet's security context and mounts, the atomic install, and the ConfigMap's configs
// through knit's own validators (the kubernetes lab runs knitd itself; this checks what ships).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseNetworkConfig } from '../../pkg/agent/network-config';
import { parseConf } from '../../pkg/cni/conf';
import { overlayFlags } from '../../cmd/knitd/overlay';
import { DEFAULT_KUBE_NAMESPACE, KEYGEN_CONFIGMAP } from '../../pkg/datastore/kube-keygen';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = Record<string, any>;

const dir = join(__dirname, '../../conf/kubernetes');
const text = readFileSync(join(dir, 'knit.yaml'), 'utf8');

describe('kubernetes manifests (conf/kubernetes)', () => {
  const parsed = parseAllDocuments(text);
  const docs: Doc[] = [];
  for (const d of Array.isArray(parsed) ? parsed : [parsed]) {
    if (d.errors.length) throw new Error(`knit.yaml: ${d.errors.map((e) => e.message).join('; ')}`);
    const v = d.toJS() as Doc | null;
    if (v) docs.push(v);
  }
  const one = (kind: string): Doc => {
    const all = docs.filter((d) => d.kind === kind);
    assert.equal(all.length, 1, `exactly one ${kind}`);
    return all[0]!;
  };
  const ds = (): Doc => one('DaemonSet');
  const pod = (): Doc => ds().spec.template.spec;
  const knitd = (): Doc => pod().containers.find((c: Doc) => c.name === 'knitd');
  const cm = (): Doc => one('ConfigMap');
  const k8sArgs = (c: Doc): string[] => (c.args ?? []).map(String);

  it('has every kind, namespaced in knit-system', () => {
    assert.deepEqual(docs.map((d) => d.kind).sort(),
      ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet', 'Namespace', 'Role', 'RoleBinding', 'ServiceAccount']);
    assert.equal(one('Namespace').metadata.name, 'knit-system');
    for (const d of docs) {
      assert.ok(d.apiVersion && d.metadata?.name, `${d.kind} has apiVersion and name`);
      if (['ServiceAccount', 'ConfigMap', 'DaemonSet', 'Role', 'RoleBinding'].includes(d.kind)) assert.equal(d.metadata.namespace, 'knit-system', d.kind);
    }
  });

  it('RBAC: nodes get/list/watch/patch, pods list (the IPAM GC) and nothing else, bound to the knit service account', () => {
    const role = one('ClusterRole');
    assert.deepEqual(role.rules, [
      { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch', 'patch'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
    ]);
    const flat = JSON.stringify(role.rules);
    assert.ok(!flat.includes('*'), 'no wildcard');
    assert.ok(!flat.includes('secrets'), 'no secrets');
    assert.ok(!role.aggregationRule, 'no aggregation');
    const b = one('ClusterRoleBinding');
    assert.deepEqual(b.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
    const sa = one('ServiceAccount');
    assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
  });

  it('RBAC: the key generation\'s ConfigMap only (get/patch by name, create), in knit-system, bound to the knit service account; knitd knows its namespace', () => {
    const role = one('Role');
    assert.deepEqual(role.rules, [
      { apiGroups: [''], resources: ['configmaps'], resourceNames: [KEYGEN_CONFIGMAP], verbs: ['get', 'patch'] },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
    ]);
    const b = one('RoleBinding');
    assert.deepEqual(b.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
    const sa = one('ServiceAccount');
    assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    assert.deepEqual(knitd().env.find((e: Doc) => e.name === 'POD_NAMESPACE'), { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } });
    assert.equal(role.metadata.namespace, DEFAULT_KUBE_NAMESPACE);
  });

  it('DaemonSet: host network, service account, every node, node-critical, rolling update', () => {
    const p = pod();
    assert.equal(p.hostNetwork, true);
    assert.equal(p.serviceAccountName, one('ServiceAccount').metadata.name);
    assert.equal(p.priorityClassName, 'system-node-critical');
    assert.ok(p.tolerations.some((t: Doc) => t.operator === 'Exists' && !t.key && !t.effect), 'tolerates every taint');
    assert.deepEqual(ds().spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    const sel = ds().spec.selector.matchLabels;
    for (const [k, v] of Object.entries(sel)) assert.equal(ds().spec.template.metadata.labels[k], v, 'selector matches the template');
  });

  it('knitd: only NET_ADMIN and NET_RAW added, ALL dropped, not privileged; no container is privileged', () => {
    const sc = knitd().securityContext;
    assert.deepEqual([...sc.capabilities.add].sort(), ['NET_ADMIN', 'NET_RAW']);
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.notEqual(sc.privileged, true);
    for (const c of [...pod().containers, ...(pod().initContainers ?? [])]) {
      assert.notEqual(c.securityContext?.privileged, true, `${c.name} not privileged`);
      assert.ok(c.securityContext?.capabilities?.drop?.includes('ALL'), `${c.name} drops ALL`);
      for (const cap of c.securityContext?.capabilities?.add ?? []) assert.ok(['NET_ADMIN', 'NET_RAW'].includes(cap), `${c.name} adds ${cap}`);
    }
    assert.notEqual(pod().hostPID, true);
  });

  it('every volumeMount has a volume, every volume is mounted, the host paths knitd needs are there', () => {
    const p = pod();
    const vols = new Map<string, Doc>(p.volumes.map((v: Doc) => [v.name, v]));
    assert.equal(vols.size, p.volumes.length, 'volume names are unique');
    const mounted = new Set<string>();
    for (const c of [...p.containers, ...(p.initContainers ?? [])]) {
      for (const m of c.volumeMounts ?? []) {
        assert.ok(vols.has(m.name), `${c.name} mounts ${m.name}, which is a volume`);
        mounted.add(m.name);
      }
    }
    for (const name of vols.keys()) assert.ok(mounted.has(name), `volume ${name} is mounted somewhere`);
    const hostPathOf = (c: Doc, path: string): Doc | undefined =>
      (c.volumeMounts ?? []).find((m: Doc) => vols.get(m.name)?.hostPath?.path === path);
    const k = knitd();
    for (const path of ['/run/knit', '/var/run/netns', '/var/lib/cni', '/opt/cni/bin', '/var/lib/knit']) {
      const m = hostPathOf(k, path);
      assert.ok(m, `knitd mounts the host's ${path}`);
      assert.equal(m.mountPath, path, `${path} at the same path inside`);
    }
    assert.equal(hostPathOf(k, '/var/run/netns')!.mountPropagation, 'HostToContainer');
    const netd = hostPathOf(k, '/etc/cni/net.d');
    assert.ok(netd && netd.readOnly === true, "knitd reads the host's /etc/cni/net.d (the IPAM GC's networks), read-only");
    const init = p.initContainers.find((c: Doc) => c.name === 'install-cni');
    assert.ok(hostPathOf(init, '/opt/cni/bin') && hostPathOf(init, '/etc/cni/net.d'), 'the init container mounts the CNI bin and conf dirs');
  });

  it('the init container installs atomically: a temporary name in the same directory, then mv', () => {
    const init = pod().initContainers.find((c: Doc) => c.name === 'install-cni');
    const script = [...(init.command ?? []), ...(init.args ?? [])].join('\n');
    assert.match(script, /set -eu/);
    const mountOf = (host: string): string => init.volumeMounts.find((m: Doc) =>
      pod().volumes.find((v: Doc) => v.name === m.name)?.hostPath?.path === host).mountPath;
    const bin = mountOf('/opt/cni/bin');
    const netd = mountOf('/etc/cni/net.d');
    // cp to <dir>/.<name>.knit-tmp, then mv -f onto <dir>/<name>, for the executables and the conflist.
    const pairs = [...script.matchAll(/cp (?:-a )?"?(\S+?)"? "?(\S+?)"?\n\s*mv -f "?(\S+?)"? "?(\S+?)"?\n/g)];
    assert.equal(pairs.length, 2, 'two cp+mv pairs (executables, conflist)');
    for (const [, , tmp, from, to] of pairs) {
      assert.equal(tmp, from, 'mv renames the file cp wrote');
      const d = (s: string): string => s.slice(0, s.lastIndexOf('/'));
      assert.equal(d(tmp!), d(to!), 'the temporary file is in the target directory (rename, not copy)');
      assert.match(tmp!.slice(tmp!.lastIndexOf('/') + 1), /^\..*\.knit-tmp$/, 'hidden temp name the runtime never loads');
    }
    assert.ok(pairs[0]![4]!.startsWith(`${bin}/`), 'executables into the CNI bin dir');
    assert.equal(pairs[1]![4], `${netd}/10-knit.conflist`, 'conflist into net.d, after the executables');
    assert.match(script, /for f in \/opt\/knit\/bin\/\*/, 'copies every file of the release');
  });

  it("net-conf.json passes knit's network config validator", () => {
    const cfg = parseNetworkConfig(cm().data['net-conf.json']);
    assert.equal(cfg.network, '10.244.0.0/16');
    assert.equal(cfg.subnetLen, 24);
    assert.deepEqual(cfg.backend, { type: 'vxlan', vni: 1, port: 4789 });
  });

  it("10-knit.conflist: each plugin passes knit's conf parser, the first is knit-overlay", () => {
    const list = JSON.parse(cm().data['10-knit.conflist']) as Doc;
    assert.equal(typeof list.name, 'string');
    assert.ok(Array.isArray(list.plugins) && list.plugins.length > 0);
    // A runtime hands each plugin its entry with the list's name and cniVersion.
    const confs = list.plugins.map((p: Doc) => parseConf(JSON.stringify({ ...p, name: list.name, cniVersion: list.cniVersion }), 'ADD'));
    assert.equal(confs[0].type, 'knit-overlay');
    assert.equal(list.plugins[0].runDir, '/run/knit');
    const runDirArg = knitd().args[knitd().args.indexOf('--run-dir') + 1];
    assert.equal(runDirArg, list.plugins[0].runDir, "knitd's --run-dir is the plugin's runDir");
  });

  it('knitd runs --datastore kubernetes with the ConfigMap net-conf.json, its node name from the downward API', () => {
    const k = knitd();
    const args: string[] = [...(k.command ?? []), ...(k.args ?? [])];
    const flag = (f: string): string | undefined => { const i = args.indexOf(f); return i < 0 ? undefined : args[i + 1]; };
    assert.equal(flag('--datastore'), 'kubernetes');
    assert.equal(flag('--node-name'), '$(KNIT_NODE_NAME)');
    assert.deepEqual(k.env.find((e: Doc) => e.name === 'KNIT_NODE_NAME').valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
    const netConf = flag('--net-conf')!;
    const cfgVol = pod().volumes.find((v: Doc) => v.configMap?.name === cm().metadata.name);
    assert.ok(cfgVol, 'the ConfigMap is a volume');
    const m = k.volumeMounts.find((x: Doc) => x.name === cfgVol.name);
    assert.equal(netConf, `${m.mountPath}/net-conf.json`, '--net-conf is the mounted ConfigMap key');
    assert.ok('net-conf.json' in cm().data);
    // The probes hit the health endpoint knitd serves on --metrics-addr.
    const addr = flag('--metrics-addr')!;
    const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
    for (const probe of [k.readinessProbe, k.livenessProbe]) {
      assert.equal(probe.httpGet.path, '/healthz');
      assert.equal(probe.httpGet.port, port);
      assert.equal(probe.httpGet.host, addr.slice(0, addr.lastIndexOf(':')));
    }
    assert.ok(k.resources?.requests?.cpu && k.resources?.requests?.memory, 'resource requests');
  });

  it("knitd's arguments pass knitd's own flag parser; the IPAM GC reads the mounted CNI conf dir", () => {
    const args: string[] = k8sArgs(knitd());
    const values: Record<string, string> = {};
    for (let i = 0; i < args.length; i += 2) {
      assert.match(args[i]!, /^--[a-z-]+$/, `${args[i]} is a flag followed by its value`);
      values[args[i]!.slice(2)] = args[i + 1]!;
    }
    values['node-name'] = 'node-1'; // $(KNIT_NODE_NAME), expanded by the kubelet
    const f = overlayFlags(values, {})!;
    assert.deepEqual(f.kubernetes!.ipamGc, { confDir: '/etc/cni/net.d', intervalSec: 300, graceSec: 300 });
    const m = knitd().volumeMounts.find((x: Doc) => x.mountPath === f.kubernetes!.ipamGc.confDir);
    assert.ok(m, '--cni-conf-dir is mounted');
  });

  it('Dockerfile: debian:12-slim, the release into /opt/knit/bin, knitd as entrypoint', () => {
    const df = readFileSync(join(dir, 'Dockerfile'), 'utf8');
    assert.match(df, /^FROM debian:12-slim$/m);
    assert.match(df, /^COPY dist\/release\/ \/opt\/knit\/bin\/$/m);
    assert.match(df, /^ENTRYPOINT \["\/opt\/knit\/bin\/knitd"\]$/m);
    assert.equal(knitd().image, pod().initContainers[0].image, 'one image for both containers');
  });
});
