import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, redact } from '../../pkg/cni/log';
import { dispatch, type Plugin } from '../../pkg/cni/skel';

describe('cni log', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'knit-log-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('stderr gets only levels at or above KNIT_LOG_LEVEL (default warn)', () => {
    const lines: string[] = [];
    const log = createLogger({ env: {}, stderr: (l) => lines.push(l) });
    log.debug('d'); log.info('i'); log.warn('w', { a: 1 }); log.error('e');
    assert.deepEqual(lines, ['knit warn: w {"a":1}\n', 'knit error: e\n']);
    assert.equal(log.enabled('debug'), false);
    const lines2: string[] = [];
    const dbg = createLogger({ env: { KNIT_LOG_LEVEL: 'DEBUG' }, stderr: (l) => lines2.push(l) });
    dbg.debug('d');
    assert.equal(lines2.length, 1);
    assert.equal(dbg.enabled('debug'), true);
  });

  it('silent writes nothing and does not format fields', () => {
    const log = createLogger({ env: { KNIT_LOG_LEVEL: 'silent' }, stderr: () => assert.fail('wrote') });
    const trap = { get x() { return assert.fail('formatted'); } };
    log.error('e', trap as never);
  });

  it('JSON lines to KNIT_LOG_FILE, with child fields and redaction', () => {
    const file = join(dir, 'a.log');
    const log = createLogger({ env: { KNIT_LOG_FILE: file, KNIT_LOG_LEVEL: 'silent', KNIT_LOG_FILE_LEVEL: 'info' }, stderr: () => assert.fail('stderr') }).child({ plugin: 'p' });
    log.debug('skip');
    log.info('hello', { password: 'hunter2', nested: { apiKey: 'k', keep: 'v' } });
    const recs = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(recs.length, 1);
    assert.equal(recs[0].msg, 'hello');
    assert.equal(recs[0].level, 'info');
    assert.equal(recs[0].plugin, 'p');
    assert.equal(recs[0].password, '[redacted]');
    assert.deepEqual(recs[0].nested, { apiKey: '[redacted]', keep: 'v' });
    assert.ok(!Number.isNaN(Date.parse(recs[0].time)));
  });

  it('an unwritable log file never throws', () => {
    const log = createLogger({ env: {}, file: '/proc/knit/nope/x.log', stderr: () => {} });
    log.error('x');
  });

  it('redact blanks password/key/token/cert keys deeply, keeps the rest', () => {
    const out = redact({ name: 'n', token: 't', etcd: { certFile: '/c', keyFile: '/k', caCert: 'x', endpoints: ['a'] }, list: [{ secret: 's' }], keyA: 1, empty: '' , password: '' });
    assert.deepEqual(out, { name: 'n', token: '[redacted]', etcd: { certFile: '[redacted]', keyFile: '[redacted]', caCert: '[redacted]', endpoints: ['a'] }, list: [{ secret: '[redacted]' }], keyA: 1, empty: '', password: '' });
  });

  it('the config key logFile is used by dispatch; stacks go to the log, never stdout', async () => {
    const file = join(dir, 'b.log');
    const plugin: Plugin = {
      name: 't',
      add: async () => { throw new TypeError('oops'); },
      del: async () => {}, check: async () => {}, status: async () => {}, gc: async () => {},
    };
    const conf = { cniVersion: '1.1.0', name: 'n', type: 't', logFile: file, etcd: { password: 'pw' } };
    const out = await dispatch(plugin, { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c', CNI_NETNS: '/x', CNI_IFNAME: 'eth0', CNI_NETNS_OVERRIDE: '1', KNIT_LOG_LEVEL: 'silent', KNIT_LOG_FILE_LEVEL: 'debug' }, Buffer.from(JSON.stringify(conf)));
    assert.deepEqual(JSON.parse(out.stdout), { cniVersion: '1.1.0', code: 5, msg: 'oops' });
    assert.ok(existsSync(file));
    const text = readFileSync(file, 'utf8');
    assert.match(text, /"msg":"request"/);
    assert.match(text, /TypeError: oops\\n {4}at /);
    assert.doesNotMatch(text, /"pw"/);
  });
});
