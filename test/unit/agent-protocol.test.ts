// The knit-client <-> knitd frames: round trips, and strict refusal of anything malformed.
import assert from 'node:assert/strict';
import {
  FrameError, MAX_BODY, REQUEST_MAGIC, RESPONSE_MAGIC, Status, bodyLength, decodeRequest, decodeResponse, encodeRequest, encodeResponse,
} from '../../pkg/agent/cni-protocol';

describe('agent CNI protocol', () => {
  const req = { plugin: 'knit-bridge', env: { CNI_COMMAND: 'ADD', CNI_ARGS: 'a=b;c=d', KNIT_LOG_LEVEL: 'debug' }, stdin: Buffer.from('{"cniVersion":"1.1.0"}') };

  it('round-trips a request and a response', () => {
    const f = encodeRequest(req);
    assert.equal(bodyLength(f), f.length - 8);
    assert.deepEqual(decodeRequest(f.subarray(8)), req);
    const r = { status: Status.Answered, exitCode: 1, stdout: '{"code":7}', stderr: 'knit warn: x\n' };
    assert.deepEqual(decodeResponse(encodeResponse(r)), r);
  });

  it('refuses foreign magic, oversize bodies, lying lengths and trailing bytes', () => {
    const f = encodeRequest(req);
    const head = Buffer.from(f.subarray(0, 8));
    head.writeUInt32LE(RESPONSE_MAGIC, 0);
    assert.throws(() => bodyLength(head), FrameError);
    head.writeUInt32LE(REQUEST_MAGIC, 0);
    head.writeUInt32LE(MAX_BODY + 1, 4);
    assert.throws(() => bodyLength(head), FrameError);
    const body = Buffer.from(f.subarray(8));
    assert.throws(() => decodeRequest(Buffer.concat([body, Buffer.from([0])])), /trailing/);
    assert.throws(() => decodeRequest(body.subarray(0, body.length - 1)), FrameError);
    const lying = Buffer.from(body);
    lying.writeUInt32LE(1000, 0);
    assert.throws(() => decodeRequest(lying), FrameError);
    assert.throws(() => decodeRequest(encodeRequest({ ...req, plugin: '../x' }).subarray(8)), /plugin name/);
  });

  it('keeps only CNI_* and KNIT_* variables', () => {
    const f = encodeRequest({ ...req, env: { CNI_COMMAND: 'DEL', PATH: '/bin', LD_PRELOAD: '/x.so', 'CNI_a-b': 'y' } });
    assert.deepEqual(decodeRequest(f.subarray(8)).env, { CNI_COMMAND: 'DEL' });
  });
});
