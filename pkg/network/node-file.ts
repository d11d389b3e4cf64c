// What knitd tells the named-network plugins on its node: <runDir>/networks/node.json, written
// atomically (temp file, fsync, rename) and readable by root only (it holds the etcd credentials).
// The plugin records endpoints on the node's etcd lease named here, so they die with the node.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { EtcdConnConfig } from '../ipam/etcd-config';

export interface NetworkNodeFile {
  nodeName: string;
  /** The node's underlay address: remote VTEPs send this node's containers' traffic here. */
  nodeIp: string;
  /** The node's etcd lease (decimal int64); "" on the mesh. */
  lease: string;
  /** Absent on the mesh: endpoints go through knitd (<runDir>/mesh.sock). */
  etcd?: EtcdConnConfig;
  datastore?: 'mesh';
  updated: string;
}

export const nodeFilePath = (runDir: string): string => path.join(runDir, 'networks', 'node.json');

export function writeNodeFile(runDir: string, f: NetworkNodeFile): void {
  const file = nodeFilePath(runDir);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeAtomic(file, JSON.stringify(f, null, 2) + '\n', 0o600);
}

/** The node file, or null when knitd has not written one. Throws on a corrupt file. */
export function readNodeFile(runDir: string): NetworkNodeFile | null {
  const file = nodeFilePath(runDir);
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
  const v = JSON.parse(text) as NetworkNodeFile;
  if (!v || typeof v.nodeName !== 'string' || typeof v.nodeIp !== 'string' || typeof v.lease !== 'string' || (!v.etcd && v.datastore !== 'mesh')) throw new Error(`${file}: not a knit node file`);
  return v;
}

/** Writes file as a whole or not at all: readers see the old content or the new. */
export function writeAtomic(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
