// knit-overlay executable: the plugin (./plugin.ts) bound to the process; knitd serves the same object.
import { main } from '../../pkg/cni/skel';
import { overlay } from '../../plugins/main/overlay/plugin';

main(overlay);
