// A share of the benchmark's mesh members (scripts/bench/mesh.ts): real pkg/mesh nodes over TCP on
// 127.0.0.1 in this process, driven by the parent over IPC. Several of these host a 200-node mesh
// (the processes share the machine's cores), so no member is simulated: every one runs the real
// protocol. Times are absolute
// (performance.timeOrigin + now, ms), comparable between the processes of one machine.
import { MeshNode } from '../../pkg/mesh/node';

const SECRET = Buffer.from('bench');
const nodes = new Map<string, MeshNode>();
const abs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves with the time `pred` last became true over every node here (checked on each state change). */
function whenAll(pred: (n: MeshNode) => boolean, ms: number, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const pending = new Set([...nodes.values()].filter((n) => !pred(n)));
    let last = abs();
    const offs: Array<() => void> = [];
    const done = (): void => { clearTimeout(timer); for (const o of offs) o(); resolve(last); };
    const timer = setTimeout(() => { for (const o of offs) o(); reject(new Error(`timed out: ${what} (${pending.size} node(s) short)`)); }, ms);
    if (!pending.size) { done(); return; }
    for (const n of pending) {
      offs.push(n.onChange(() => {
        if (!pending.has(n) || !pred(n)) return;
        pending.delete(n);
        last = abs();
        if (!pending.size) done();
      }));
    }
  });
}

/** Polls `pred` (connections change without a state change) every 5 ms. */
async function pollAll(pred: (n: MeshNode) => boolean, ms: number, what: string): Promise<number> {
  const end = Date.now() + ms;
  while (![...nodes.values()].every(pred)) { if (Date.now() > end) throw new Error(`timed out: ${what}`); await sleep(5); }
  return abs();
}

type Req = { id: number; op: string; [k: string]: unknown };
const armed = new Map<string, Promise<number>>();
/** Kept until collected; its failure is reported then (not as an unhandled rejection now). */
const arm = (key: string, p: Promise<number>): true => { p.catch(() => undefined); armed.set(key, p); return true; };

async function handle(m: Req): Promise<unknown> {
  switch (m.op) {
    case 'start': {
      const n = new MeshNode({ name: m.name as string, secret: SECRET, listen: { host: '127.0.0.1', port: (m.port as number | undefined) ?? 0 }, peers: m.peers as string[], stateDir: null, ttlSec: m.ttl as number, ...(m.fanout ? { fanout: m.fanout as number } : {}), ...(m.fullMesh ? { fullMesh: m.fullMesh as number } : {}) });
      await n.start();
      nodes.set(n.state.self, n);
      return n.listenPort;
    }
    case 'minConnected': return Math.min(...[...nodes.values()].map((n) => n.connected().length));
    // How far the mesh here has formed: the fewest live members a node sees, and the nodes not yet connected to every peer the topology gives them.
    case 'formed': {
      const now = Date.now();
      const ns = [...nodes.values()];
      return { minLive: Math.min(...ns.map((n) => n.state.members().filter((x) => n.state.live(x, now)).length)), notFormed: ns.filter((n) => !n.formed()).length };
    }
    case 'degrees': return [...nodes.values()].map((n) => n.connected().length);
    case 'claim': {
      const n = nodes.get(m.name as string)!;
      for (;;) {
        try { if ((await n.claim({ subnet: m.subnet as string, underlayAddr: m.underlay as string }, 10_000)).ok) return true; } catch { /* not every member reached yet */ }
        await sleep(50);
      }
    }
    case 'counters': {
      const sum: Record<string, number> = {};
      for (const n of nodes.values()) for (const [k, v] of Object.entries(n.counters)) sum[k] = (sum[k] ?? 0) + v;
      return sum;
    }
    case 'bytes': return [...nodes.values()].reduce((s, n) => s + n.bytesOut(), 0);
    // Armed before the change is made (the parent waits for every worker's answer), collected after.
    case 'armLease': arm(m.key as string, whenAll((n) => n.state.nodes.get(m.name as string)?.lease?.subnet === m.subnet, 60_000, `${m.name}'s lease everywhere`)); return true;
    case 'armData': arm(m.key as string, whenAll((n) => n.state.nodes.get(m.name as string)?.lease?.backendData?.ep === m.data, 60_000, `${m.name}'s record change everywhere`)); return true;
    case 'collect': { const p = armed.get(m.key as string)!; armed.delete(m.key as string); return p; }
    case 'waitGone': return pollAll((n) => !n.connected().includes(m.name as string), 60_000, `${m.name} gone`);
    case 'waitRemoved': return pollAll((n) => !n.state.nodes.has(m.name as string), 60_000, `${m.name} removed`);
    case 'remove': return nodes.get(m.by as string)!.removeNode(m.name as string);
    case 'updateLease': {
      const n = nodes.get(m.name as string)!;
      const t = abs();
      n.updateLease({ ...n.ownLease!, backendData: { ep: m.data as string } });
      return t;
    }
    case 'stop': for (const n of nodes.values()) n.stop(); nodes.clear(); return true;
    default: throw new Error(`unknown op ${m.op}`);
  }
}

process.on('message', (m: Req) => {
  handle(m).then((result) => process.send!({ id: m.id, result }), (e: Error) => process.send!({ id: m.id, error: e.message }));
});
process.on('disconnect', () => process.exit(0));
