// knit-macvlan executable: the plugin (./plugin.ts) bound to the process.
import { main } from '../../pkg/cni/skel';
import { macvlan } from '../../plugins/main/macvlan/plugin';

main(macvlan);
