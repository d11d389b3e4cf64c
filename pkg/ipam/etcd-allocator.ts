// knit-etcd-ipam's library surface, for knitctl, knitd's pod GC, benchmarks and tests: the
// allocator and the cluster-wide administration. The code lives in etcd/ by job: keys.ts (key
// schema and codecs), release.ts (release transactions), blocks.ts (block picking),
// allocator.ts (the verbs), admin.ts (listings and releases across nodes).
export { EtcdAllocator } from './etcd/allocator';
export { EtcdKeys, etcdCniError, ipValue, blockValue, type AttachIp, type AttachRecord, type KvClient, type PodRef } from './etcd/keys';
export { releaseOps, releaseOutcome } from './etcd/release';
export type { Block } from './etcd/blocks';
export {
  gcNode, listNetwork, readAttachments, releaseAttachments,
  type AttachmentRow, type EtcdGcReport, type HolderRow, type NetworkListing,
} from './etcd/admin';
