// knit-host-local: IPAM from files on the node (see plugins/ipam/host-local/plugin.ts).
import { main } from '../../pkg/cni/skel';
import { hostLocal } from '../../plugins/ipam/host-local/plugin';

main(hostLocal);
