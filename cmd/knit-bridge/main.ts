// knit-bridge executable: the plugin (./plugin.ts) bound to the process; knitd serves the same object.
import { main } from '../../pkg/cni/skel';
import { bridge } from '../../plugins/main/bridge/plugin';

main(bridge);
