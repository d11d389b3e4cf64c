// knitctl: the admin CLI, on yargs (cli.ts; one file per command group in commands/). Tables for
// people and --json for scripts; `knitctl --help`, `knitctl <command> --help`.
//
//   knitctl ipam ls | ipam gc (--node N | --pods)     knit-etcd-ipam's addresses (commands/ipam.ts)
//   knitctl pod-network set FILE | pod-network get    the routed pod network's config (commands/pod-network.ts)
//   knitctl status | peers | inspect                  the pod network's leases (commands/overlay.ts)
//   knitctl node rm NAME                              (commands/node.ts)
//   knitctl attach|detach NETWORK TARGET              a running container on a network (commands/attach.ts)
//   knitctl completion                                the bash/zsh completion script
//
// etcd flags (every command): --etcd-endpoints URL[,URL...] (default $KNIT_ETCD_ENDPOINTS or
// http://127.0.0.1:2379), --etcd-prefix (default /knit), --etcd-cafile, --etcd-certfile,
// --etcd-keyfile, --etcd-username, --etcd-password (or $KNIT_ETCD_PASSWORD, kept out of the
// process list), --etcd-timeout MS (default 5000).
import { run } from './cli';

export { run } from './cli';
export { etcdConfFromArgs, table } from './common';

if (require.main === module) {
  run(process.argv.slice(2)).then((r) => {
    if (r.out) process.stdout.write(r.out);
    if (r.err) process.stderr.write(r.err);
    process.exitCode = r.code;
  });
}
