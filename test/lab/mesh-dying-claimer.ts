// Tests (test/unit/mesh-stranded.test.ts): a mesh claimer that dies mid-race. It joins the mesh
// at --peers, waits until it is connected to `peers` members, puts one claim to the vote and
// SIGKILLs itself at the moment `when` names, so nothing after it runs (no record, no ungrant):
//   first-grant   as the first voter's grant comes back (the others' requests are out)
//   won           when the vote returns won, before the claim's record or block is written
//   ungrant       a lost race, as it starts giving its votes back
// argv: NAME STATE_DIR PEER(host:port) CONNECTED CLAIM_JSON WHEN [REACHABLE,...]
import { MeshNode } from '../../pkg/mesh/node';
import type { Claim } from '../../pkg/mesh/grants';

const [name, stateDir, peer, connected, claimJson, when, reach] = process.argv.slice(2) as [string, string, string, string, string, string, string?];
const only = reach ? new Set(reach.split(',')) : null;
const die = (): never => { process.kill(process.pid, 'SIGKILL'); throw new Error('unreachable'); };

void (async () => {
  const node = new MeshNode({
    name, secret: Buffer.from(process.env.KNIT_TEST_MESH_SECRET ?? ''), listen: { host: '127.0.0.1', port: 0 }, peers: [peer],
    stateDir, ttlSec: 3, ...(only ? { reachable: (n: string) => only.has(n) } : {}),
  });
  await node.start();
  await node.ready(10_000);
  while (node.connected().length < Number(connected)) await new Promise((r) => setTimeout(r, 20));
  const n = node as unknown as { request: (c: unknown, body: { op: string }) => Promise<Record<string, unknown> | null> };
  const request = n.request.bind(node);
  n.request = async (c, body) => {
    if (when === 'ungrant' && body.op === 'ungrant') die();
    const r = await request(c, body);
    if (when === 'first-grant' && body.op === 'grant' && r?.ok === true) die();
    return r;
  };
  process.stdout.write('voting\n');
  try { await node.vote(JSON.parse(claimJson) as Claim, node.version()); } catch { /* a lost race: NoQuorumError */ }
  die();
})();
