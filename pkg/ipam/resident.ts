// Whether knit's IPAM runs in a long-lived process (knitd) rather than an exec'd plugin. knitd
// sets it at start; knit-etcd-ipam then keeps one allocator per network and etcd connection
// across requests (its caches, keep-alive client and batched ADDs). A module of its own, so
// knitd can set it without loading the etcd client.
export const resident = { enabled: false, idleMs: 60_000 };
