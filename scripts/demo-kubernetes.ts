// The Kubernetes part of `npm run demo`: knitd --datastore kubernetes on two lab hosts against a
// test API server (Nodes with podCIDRs, as kubeadm's controller manager assigns them; there is
// no apiserver package, so test/lab/kube-api.ts serves the API on a unix socket, relayed onto the
// lab switch from a lab namespace). The demo shows the annotations knitd publishes, a pod on each
// host pinging the other, then the knit-etcd-ipam pod GC: an address whose pod was deleted
// without a DEL, freed by `knitctl ipam gc --pods`, while the pod that exists keeps its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab } from '../test/lab/lab';
import { EtcdCluster, haveEtcd } from '../test/lab/etcd';
import { KubeApiServer, relayToUnix } from '../test/lab/kube-api';
import { BIN, indent, step, waitForLeases } from './demo-ui';

const API = '192.168.78.254';

export async function kubernetesDemo(): Promise<void> {
  step('Kubernetes: knitd --datastore kubernetes on two nodes (subnets from Node.spec.podCIDR)');
  const lab = new Lab();
  const tmp = mkdtempSync(join(tmpdir(), 'knit-demo-kube-'));
  const agents: ChildProcess[] = [];
  const api = new KubeApiServer();
  let etcd: EtcdCluster | undefined;
  try {
    const sw = await lab.switch();
    const apiHost = await lab.host('kapi', sw, { address: `${API}/24` });
    await api.startUnix(join(tmp, 'api.sock'), `http://${API}:6443`);
    const relay = relayToUnix(apiHost.name, API, 6443, join(tmp, 'api.sock'));
    await new Promise<void>((res, rej) => { relay.stdout!.once('data', () => res()); relay.once('exit', (c) => rej(new Error(`api relay exited ${c}`))); });
    const kubeconfig = join(tmp, 'kubeconfig');
    writeFileSync(kubeconfig, api.kubeconfig());
    const netConf = join(tmp, 'net-conf.json');
    writeFileSync(netConf, JSON.stringify({ network: '10.244.0.0/16', subnetLen: 24, backend: { type: 'vxlan', vni: 1 } }));
    const hosts = [await lab.host('kn1', sw, { address: '192.168.78.1/24' }), await lab.host('kn2', sw, { address: '192.168.78.2/24' })];
    const runDirs = hosts.map((h) => join(tmp, h.name, 'run'));
    for (const [i, h] of hosts.entries()) {
      api.addNode(`node${i + 1}`, { podCIDR: `10.244.${i + 1}.0/24` });
      agents.push(spawn('ip', ['netns', 'exec', h.name, join(BIN, 'knitd'), '--datastore', 'kubernetes', '--kubeconfig', kubeconfig, '--net-conf', netConf,
        '--node-name', `node${i + 1}`, '--iface', 'eth0', '--run-dir', runDirs[i]!, '--state-dir', join(tmp, h.name, 'state'),
        '--cni-socket-dir', join(tmp, h.name, 'cni'), '--ipam-gc-interval', '0'], { stdio: 'ignore', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } }));
    }
    await waitForLeases(runDirs);
    console.log(indent(api.list().map((n) => `Node ${n.metadata.name}: podCIDR ${n.spec?.podCIDR}; ${Object.entries(n.metadata.annotations ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')}`).join('\n')));
    await new Promise((r) => setTimeout(r, 500));
    const ips: string[] = [];
    for (const [i, h] of hosts.entries()) {
      const pod = await lab.pod(`kpod${i + 1}`);
      const r = await lab.runPlugin(h, join(BIN, 'knit-overlay'), {
        command: 'ADD', containerId: `k-${i}`, netns: pod.path, ifName: 'eth0', path: [BIN],
        conf: { cniVersion: '1.1.0', name: 'knit-overlay', type: 'knit-overlay', runDir: runDirs[i], ipam: { type: 'knit-host-local', dataDir: join(tmp, h.name, 'ipam') } },
        env: { KNIT_CNI_SOCKET_DIR: join(tmp, 'none') },
      });
      if (r.code !== 0) throw new Error(`ADD failed: ${r.stdout || r.stderr}`);
      ips.push(r.json.ips[0].address.split('/')[0]);
      console.log(indent(`${pod.name} on node${i + 1}: ${r.json.ips[0].address}`));
    }
    const p = await lab.exec({ name: `${lab.prefix}-kpod1`, path: '' }, 'ping', ['-c', '2', '-i', '0.2', '-W', '1', ips[1]!], { allowFail: true });
    console.log(indent(p.stdout.split('\n').filter((l) => /bytes from|packet loss/.test(l)).join('\n')));

    step('knit-etcd-ipam GC against the pods that exist (status lags ADD, so pods are judged by identity, twice)');
    if (!haveEtcd()) { console.log(indent('skipped: needs Debian etcd-server (scripts/bootstrap installs it)')); return; }
    etcd = await EtcdCluster.start({ netns: hosts[0]!, host: '127.0.0.1' });
    const ipam = { type: 'knit-etcd-ipam', nodeName: 'node1', etcd: { endpoints: etcd.endpoints }, ranges: [[{ subnet: '10.245.0.0/24' }]] };
    for (const name of ['web', 'batch-job']) {
      const pod = api.addPod('default', name, { nodeName: 'node1' });
      const r = await lab.runPlugin(hosts[0]!, join(BIN, 'knit-etcd-ipam'), {
        command: 'ADD', containerId: `sandbox-${name}`, netns: '/run/netns/none', ifName: 'eth0', path: [BIN],
        args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name};K8S_POD_UID=${pod.metadata.uid}`,
        conf: { cniVersion: '1.1.0', name: 'cluster-pods', type: 'bridge', ipam },
      });
      if (r.code !== 0) throw new Error(`knit-etcd-ipam ADD failed: ${r.stdout || r.stderr}`);
    }
    api.deletePod('default', 'batch-job');
    console.log(indent('pod default/batch-job deleted from the API; its sandbox never got a DEL'));
    const ctl = async (args: string[]): Promise<string> => {
      const r = await lab.exec(hosts[0]!, join(BIN, 'knitctl'), [...args, '--etcd-endpoints', etcd!.endpoints[0]!], { env: { NODE_EXTRA_CA_CERTS: undefined, KUBECONFIG: kubeconfig }, allowFail: true });
      return r.stdout + r.stderr;
    };
    console.log(indent('$ knitctl ipam ls'));
    console.log(indent(await ctl(['ipam', 'ls'])));
    console.log(indent('$ knitctl ipam gc --pods --grace 2'));
    console.log(indent(await ctl(['ipam', 'gc', '--pods', '--grace', '2'])));
    console.log(indent('$ knitctl ipam ls'));
    console.log(indent(await ctl(['ipam', 'ls'])));
  } finally {
    for (const a of agents) a.kill('SIGTERM');
    await etcd?.stop();
    await api.close();
    await lab.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  }
}
