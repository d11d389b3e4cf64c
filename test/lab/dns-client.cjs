// A small DNS client for the lab, run inside a lab netns (`ip netns exec NS node dns-client.cjs ...`)
// so that its packets come from a pod's address. dns-packet on this side too.
//   query SERVER NAME [TYPE] [tcp]      one query; prints {rcode, flags, answers} as JSON, or {error}
//   junk SERVER COUNT SEED              COUNT malformed packets (truncated, loops, huge counts, random)
//   load SERVER NAME QPS SECONDS        queries at a steady rate (SECONDS 0: until SIGTERM); prints
//                                       {sent, answered, lost, failed, ms:[...]}: failed = answered
//                                       without an address (any rcode but NOERROR, or no answer record)
'use strict';
const dgram = require('node:dgram');
const net = require('node:net');
const packet = require('dns-packet');

const [mode, server, ...rest] = process.argv.slice(2);
const port = Number(process.env.DNS_PORT || 53);
const fam = server && server.includes(':') ? 'udp6' : 'udp4';
const out = (o) => { process.stdout.write(JSON.stringify(o) + '\n'); };
const summary = (r) => ({
  rcode: r.rcode, aa: r.flag_aa, tc: r.flag_tc, ra: r.flag_ra, id: r.id,
  answers: (r.answers || []).map((a) => ({ type: a.type, name: a.name, ttl: a.ttl, data: String(a.data) })),
});

function query() {
  const [name, type = 'A', transport = 'udp'] = rest;
  const id = Math.floor(Math.random() * 65535);
  const q = packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
  const timer = setTimeout(() => { out({ error: 'timeout' }); process.exit(0); }, 4000);
  const done = (buf) => { clearTimeout(timer); out(summary(packet.decode(buf))); process.exit(0); };
  if (transport === 'tcp') {
    const s = net.connect({ host: server, port }, () => { const l = Buffer.alloc(2); l.writeUInt16BE(q.length); s.write(Buffer.concat([l, q])); });
    let b = Buffer.alloc(0);
    s.on('data', (d) => { b = Buffer.concat([b, d]); if (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) done(b.subarray(2, 2 + b.readUInt16BE(0))); });
    s.on('error', (e) => { out({ error: e.code || e.message }); process.exit(0); });
    return;
  }
  const s = dgram.createSocket(fam);
  s.on('message', done);
  s.on('error', (e) => { out({ error: e.code || e.message }); process.exit(0); });
  s.send(q, port, server);
}

function junk() {
  const count = Number(rest[0] || 100);
  let seed = Number(rest[1] || 1);
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
  const good = packet.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'web', class: 'IN' }] });
  const head = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  const kinds = [
    () => good.subarray(0, rnd() % good.length),                                           // truncated
    () => Buffer.concat([head, Buffer.from([0xc0, 12, 0, 1, 0, 1])]),                      // pointer to itself
    () => Buffer.concat([head, Buffer.from([1, 0x61, 0xc0, 16, 0xc0, 12, 0, 1, 0, 1])]),   // pointer loop
    () => { const b = Buffer.from(good); b.writeUInt16BE(0xffff, 4); return b; },           // qdcount 65535
    () => { const b = Buffer.from(good); b.writeUInt16BE(0xffff, 10); return b; },          // arcount 65535
    () => Buffer.from(Array.from({ length: rnd() % 300 }, () => rnd() & 0xff)),             // noise
  ];
  const s = dgram.createSocket(fam);
  let i = 0;
  // Paced (a millisecond every 20 packets) so that the server's socket buffer never overflows:
  // every packet sent is one the server sees.
  const next = () => {
    if (i >= count) { s.close(); out({ sent: count }); return; }
    s.send(kinds[i++ % kinds.length](), port, server, () => (i % 20 ? next() : setTimeout(next, 1)));
  };
  next();
}

function load() {
  const [name, qpsS, secS] = rest;
  const qps = Number(qpsS), secs = Number(secS);
  const total = Math.round(qps * secs);
  const s = dgram.createSocket(fam);
  const pending = new Map();
  const ms = [];
  let sent = 0, id = 0, failed = 0, stop = false;
  const q = packet.encode({ type: 'query', id: 0, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name, class: 'IN' }] });
  s.on('message', (m) => {
    const k = m.readUInt16BE(0);
    const t = pending.get(k);
    if (t === undefined) return;
    pending.delete(k);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    if ((m.readUInt16BE(2) & 0xf) !== 0 || m.readUInt16BE(6) === 0) failed++;
  });
  process.on('SIGTERM', () => { stop = true; });
  const t0 = process.hrtime.bigint();
  // 1 ms ticks sending what is due: a steady rate without a busy loop taking a CPU from the server.
  const tick = () => {
    const due = Math.floor((Number(process.hrtime.bigint() - t0) / 1e9) * qps);
    while (sent < due && (total === 0 || sent < total)) {
      id = (id + 1) & 0xffff;
      const b = Buffer.from(q); // a buffer per packet: send() reads it later
      b.writeUInt16BE(id, 0);
      pending.set(id, process.hrtime.bigint());
      s.send(b, port, server);
      sent++;
    }
    if (!stop && (total === 0 || sent < total)) setTimeout(tick, 1);
    else setTimeout(() => { s.close(); out({ sent, answered: ms.length, lost: sent - ms.length, failed, ms }); }, 1000);
  };
  tick();
}

({ query, junk, load })[mode]();
