// A fake upstream resolver for the lab: `node fake-dns.cjs ADDR '{"name":"1.2.3.4",...}'` answers
// those names (A) on UDP and TCP port 53 of ADDR, NXDOMAIN for anything else, and prints
// "ready" once listening; every query's name goes to stderr (the test checks what reached it).
'use strict';
const dgram = require('node:dgram');
const net = require('node:net');
const packet = require('dns-packet');

const [addr, map] = process.argv.slice(2);
const names = JSON.parse(map || '{}');
const answer = (msg) => {
  const q = packet.decode(msg);
  const question = q.questions[0];
  process.stderr.write(`${question.name}\n`);
  const ip = names[question.name.toLowerCase()];
  return packet.encode({
    type: 'response', id: q.id, flags: packet.RECURSION_AVAILABLE | (ip ? 0 : 3), questions: q.questions,
    answers: ip && question.type === 'A' ? [{ type: 'A', name: question.name, ttl: 30, data: ip }] : [],
  });
};
const udp = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
udp.on('message', (m, r) => udp.send(answer(m), r.port, r.address));
const tcp = net.createServer((s) => {
  let b = Buffer.alloc(0);
  s.on('data', (d) => {
    b = Buffer.concat([b, d]);
    while (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) {
      const m = b.subarray(2, 2 + b.readUInt16BE(0));
      b = b.subarray(2 + m.length);
      const r = answer(m);
      const l = Buffer.alloc(2); l.writeUInt16BE(r.length);
      s.write(Buffer.concat([l, r]));
    }
  });
  s.on('error', () => s.destroy());
});
udp.bind(53, addr, () => tcp.listen(53, addr, () => process.stdout.write('ready\n')));
