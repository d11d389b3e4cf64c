// knit-l2overlay executable: the plugin (plugins/main/l2overlay) bound to the process; knitd serves the same object.
import { main } from '../../pkg/cni/skel';
import { l2overlay } from '../../plugins/main/l2overlay/plugin';

main(l2overlay);
