// knit-etcd-ipam: cluster-wide IPAM in etcd with per-node blocks (see plugins/ipam/etcd/plugin.ts).
import { main } from '../../pkg/cni/skel';
import { etcdIpam } from '../../plugins/ipam/etcd/plugin';

main(etcdIpam);
