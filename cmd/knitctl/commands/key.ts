// knitctl key: the encrypted pod network's key generation (docs/encryption.md).
//   knitctl key rotate [--json]   move the generation by one: every knitd installs the new SAs,
//                                 switches when its peer has them, then retires the old ones
//   knitctl key show [--json]     the generation and when it last moved (no secret exists here)
// On each datastore: etcd (<prefix>/keygen, the default), the Kubernetes API (--datastore
// kubernetes: the ConfigMap knit-keygen, --kubeconfig, --namespace), the mesh (through the local
// knitd's <run-dir>/mesh.sock, chosen as the other commands do when its socket is there and no
// etcd endpoint is given, or with --datastore mesh).
import type { CommandModule, Options } from 'yargs';
import type { KeyGeneration } from '../../../pkg/datastore/datastore';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';
import { controlCall } from '../../../pkg/mesh/control';
import { group, leaf, str, UsageError, value, withStore, type Ctx, type Flags } from '../common';
import { meshRunDir } from './mesh';

const json: Options = { type: 'boolean', describe: 'as JSON' };
const options: Record<string, Options> = {
  json,
  datastore: value('etcd, kubernetes or mesh (default: the mesh when the local knitd is in mesh mode and no --etcd-endpoints, else etcd)'),
  kubeconfig: value('with --datastore kubernetes: the kubeconfig (default $KUBECONFIG, else in-cluster)'),
  namespace: value('with --datastore kubernetes: knit\'s namespace, where the ConfigMap knit-keygen lives (default $POD_NAMESPACE, else knit-system)'),
  'run-dir': value(`on the mesh: the local knitd's --run-dir (default ${DEFAULT_RUN_DIR})`),
};

/** The key generation's record on the chosen datastore, and where it is (for the output). */
interface KeyStore {
  where: string;
  get(): Promise<KeyGeneration | null>;
  bump(expect: number | null): Promise<KeyGeneration>;
}

async function withKeyStore(a: Flags, env: NodeJS.ProcessEnv, fn: (s: KeyStore) => Promise<string>): Promise<string> {
  const ds = str(a, 'datastore');
  if (ds !== undefined && !['etcd', 'kubernetes', 'mesh'].includes(ds)) throw new UsageError(`invalid --datastore ${ds}: etcd, kubernetes or mesh`);
  if (ds !== 'kubernetes') for (const f of ['kubeconfig', 'namespace']) if (a[f] !== undefined) throw new UsageError(`--${f} is for --datastore kubernetes`);
  if (ds === 'kubernetes') {
    const { kubeClient } = require('../../../pkg/kube') as typeof import('../../../pkg/kube');
    const { bumpKubeKeyGeneration, getKubeKeyGeneration, kubeNamespace, KEYGEN_CONFIGMAP } = require('../../../pkg/datastore/kube-keygen') as typeof import('../../../pkg/datastore/kube-keygen');
    const kubeconfig = str(a, 'kubeconfig') ?? env.KUBECONFIG;
    const kube = kubeClient(kubeconfig ? { kubeconfig } : {});
    const ns = str(a, 'namespace') ?? kubeNamespace(env);
    return fn({ where: `ConfigMap ${ns}/${KEYGEN_CONFIGMAP}`, get: () => getKubeKeyGeneration(kube, ns), bump: (e) => bumpKubeKeyGeneration(kube, ns, e) });
  }
  const dir = ds === 'mesh' ? str(a, 'run-dir') ?? DEFAULT_RUN_DIR : ds === 'etcd' ? null : meshRunDir(a, env, false);
  if (dir) {
    return fn({
      where: `the mesh (through ${dir})`,
      get: () => controlCall<KeyGeneration | null>(dir, { op: 'keygen-get' }),
      bump: (expect) => controlCall<KeyGeneration>(dir, { op: 'keygen-bump', expect }),
    });
  }
  return withStore(a, env, (store) => fn({ where: store.keyGenerationKey, get: () => store.getKeyGeneration(), bump: (e) => store.bumpKeyGeneration(e) }));
}

export function commands(ctx: Ctx): CommandModule[] {
  return [group(ctx, ['key'], {
    describe: 'the encrypted pod network\'s key generation',
    commands: () => [
      leaf(ctx, ['key', 'rotate'], {
        command: 'rotate',
        describe: 'rotate the encryption keys: move the key generation by one (every node derives new pair keys; TCP streams keep going)',
        options,
        run: (a, c) => withKeyStore(a, c.env, async (store) => {
          const cur = await store.get();
          const next = await store.bump(cur?.generation ?? null);
          if (a.json) return JSON.stringify(next);
          return next.generation === (cur?.generation ?? 0) + 1
            ? `key generation ${next.generation} (was ${cur?.generation ?? 0}) in ${store.where}: nodes install it, switch, then retire ${cur?.generation ?? 0}`
            : `key generation moved meanwhile (another rotation): now ${next.generation}`;
        }),
      }),
      leaf(ctx, ['key', 'show'], {
        command: 'show',
        describe: 'the current key generation and when it moved',
        options,
        run: (a, c) => withKeyStore(a, c.env, async (store) => {
          const cur = (await store.get()) ?? { generation: 0, at: null };
          return a.json ? JSON.stringify(cur) : `key generation ${cur.generation}${cur.at ? `, since ${cur.at}` : ' (never rotated)'}`;
        }),
      }),
    ],
  })];
}
