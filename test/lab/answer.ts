// A service's backends in the lab and its clients: a server in a pod that answers every TCP
// connection on :80 (and, when asked, every UDP datagram on :5353) with its own name, and a client
// that makes connections one after the other and reports what each one read. The service tests
// count the answers to see where the load balancer sent each connection.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Lab, Netns } from './lab';

/** Starts the answering server in `pod` and resolves once it listens; the caller kills it. */
export async function serveAnswer(pod: Netns, answer: string, o: { udp?: boolean } = {}): Promise<ChildProcess> {
  const a = JSON.stringify(answer);
  const ready = o.udp
    ? `() => { const u = require('dgram').createSocket('udp4'); u.on('message', (m, r) => u.send(${a}, r.port, r.address)); u.bind(5353, () => console.log('up')); }`
    : `() => console.log('up')`;
  const p = spawn('ip', ['netns', 'exec', pod.name, process.execPath, '-e', `require('net').createServer((s) => s.end(${a} + '\\n')).listen(80, ${ready})`],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
  try {
    await new Promise<void>((resolve, reject) => { p.stdout!.once('data', () => resolve()); p.once('exit', (c) => reject(new Error(`server ${answer} exited ${c}`))); });
  } catch (e) {
    p.kill('SIGKILL');
    throw e;
  }
  return p;
}

/** `count` connections, one after the other, from the pod to addr:port: what each one read ('' when refused). */
export async function connectEach(lab: Lab, pod: Netns, addr: string, port: number, count: number): Promise<string[]> {
  const script = `const net = require('net'); (async () => { const out = []; for (let i = 0; i < ${count}; i++) {
    out.push(await new Promise((res) => { let b = ''; const s = net.connect(${port}, ${JSON.stringify(addr)});
      s.setTimeout(3000, () => { s.destroy(); res(''); }); s.on('data', (d) => (b += d)); s.on('end', () => res(b.trim())); s.on('error', () => res('')); })); }
    console.log(JSON.stringify(out)); })();`;
  const r = await lab.exec(pod, process.execPath, ['-e', script], { env: { NODE_EXTRA_CA_CERTS: undefined }, timeoutMs: 60_000 });
  return JSON.parse(r.stdout) as string[];
}
