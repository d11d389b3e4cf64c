// execPlugin against small shell-script delegates: the error paths, without any real plugin.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execPlugin, execVersion, findInPath, withIpamCleanup, type IpamRunner } from '../../pkg/cni/exec';
import { CniError } from '../../pkg/cni/errors';
import { nullLogger } from '../../pkg/cni/log';
import type { Context } from '../../pkg/cni/skel';
import type { Result } from '../../pkg/cni/types';

const isErr = (code: number, re: RegExp) => (e: unknown) => {
  if (!(e instanceof CniError)) throw e;
  if (e.code !== code || !re.test(e.message)) throw new Error(`got ${e.code} ${e.message}`);
  return true;
};

describe('cni exec (scripted delegates)', () => {
  let dir: string;
  const script = (name: string, body: string): void => {
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  };
  const env = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0' };
  const conf = { cniVersion: '1.0.0', name: 'n', type: 't' };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'knit-exec-'));
    script('echo-env', 'cat >/dev/null; printf \'{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}],"dns":{"domain":"%s-%s-%s-%s"}}\' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_ARGS"');
    script('echo-stdin', 'cat > "$0.in"; echo "{\\"cniVersion\\":\\"0.4.0\\",\\"ips\\":[{\\"version\\":\\"4\\",\\"address\\":\\"10.0.0.3/24\\"}]}"');
    script('cni-error', 'cat >/dev/null; echo \'{"cniVersion":"1.0.0","code":11,"msg":"try later","details":"lock held"}\'; exit 1');
    script('crash', 'cat >/dev/null; echo "panic: runtime error" >&2; echo "goroutine 1" >&2; exit 2');
    script('garbage', 'cat >/dev/null; echo "not json"');
    script('bad-result', 'cat >/dev/null; echo \'{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2"}]}\'');
    script('sleepy', 'sleep 5');
    script('version', 'cat >/dev/null; echo \'{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}\'');
    writeFileSync(join(dir, 'not-exec'), '#!/bin/sh\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('findInPath: first executable match; bad names → 7; missing → 5 naming type and dirs', () => {
    assert.equal(findInPath('crash', ['/nonexistent', dir + '/']), join(dir, 'crash'));
    assert.throws(() => findInPath('../crash', [dir]), isErr(7, /invalid plugin type "..\/crash"/));
    assert.throws(() => findInPath('', [dir]), isErr(7, /invalid plugin type ""/));
    assert.throws(() => findInPath('not-exec', [dir]), isErr(5, /failed to find plugin "not-exec" in path/));
    assert.throws(() => findInPath('knit-nope', ['/a', dir]), isErr(5, new RegExp(`failed to find plugin "knit-nope" in path \\[/a ${dir}\\]`)));
    assert.throws(() => findInPath('x', []), isErr(4, /CNI_PATH is empty: cannot find plugin "x"/));
  });

  it('passes CNI_COMMAND and the CNI_* variables; ADD result in 1.x form', async () => {
    const r = await execPlugin('echo-env', 'ADD', conf, { ...env, CNI_ARGS: 'IgnoreUnknown=1', CNI_COMMAND: 'DEL' }, [dir], { forwardStderr: false });
    assert.deepEqual(r, { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }], dns: { domain: 'ADD-c1-eth0-IgnoreUnknown=1' } });
  });

  it('non-ADD verbs resolve to undefined', async () => {
    assert.equal(await execPlugin('echo-env', 'DEL', conf, env, [dir]), undefined);
  });

  it('a parsed conf gets its 1.x prevResult back in its own version; a Buffer is sent as is', async () => {
    const c = { cniVersion: '0.4.0', name: 'n', type: 't', prevResult: { cniVersion: '0.4.0', ips: [{ address: '10.0.0.3/24' }] } };
    const r = await execPlugin('echo-stdin', 'ADD', c, env, [dir]);
    assert.deepEqual(r, { cniVersion: '0.4.0', ips: [{ address: '10.0.0.3/24' }] });
    const sent = JSON.parse(require('node:fs').readFileSync(join(dir, 'echo-stdin.in'), 'utf8'));
    assert.deepEqual(sent.prevResult, { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.0.0.3/24' }] });
    await execPlugin('echo-stdin', 'ADD', Buffer.from('{"raw":true}'), env, [dir]);
    assert.equal(require('node:fs').readFileSync(join(dir, 'echo-stdin.in'), 'utf8'), '{"raw":true}');
  });

  it('a delegate\'s CNI error keeps code, msg and details', async () => {
    await assert.rejects(execPlugin('cni-error', 'ADD', conf, env, [dir]), (e: unknown) => {
      assert.ok(e instanceof CniError);
      assert.deepEqual([e.code, e.message, e.details], [11, 'try later', 'lock held']);
      return true;
    });
  });

  it('failure without a CNI error → 103 with the stderr tail', async () => {
    await assert.rejects(execPlugin('crash', 'DEL', conf, env, [dir], { forwardStderr: false }), (e: unknown) => {
      assert.ok(e instanceof CniError);
      assert.equal(e.code, 103);
      assert.match(e.message, /delegated plugin "crash" \(.*\/crash\) exited with status 2 without a CNI error/);
      assert.match(e.details!, /panic: runtime error\ngoroutine 1/);
      return true;
    });
  });

  it('unparsable or invalid ADD output → 6', async () => {
    await assert.rejects(execPlugin('garbage', 'ADD', conf, env, [dir]), isErr(6, /failed to decode the result of delegated plugin "garbage"/));
    await assert.rejects(execPlugin('bad-result', 'ADD', conf, env, [dir]), isErr(6, /invalid result of bad-result.ips\[0\].address "10.0.0.2"/));
  });

  it('timeout kills the delegate → 103', async () => {
    await assert.rejects(execPlugin('sleepy', 'ADD', conf, env, [dir], { timeoutMs: 100 }), isErr(103, /killed by SIGKILL after the 100 ms limit/));
  });

  it('execVersion', async () => {
    assert.deepEqual(await execVersion('version', [dir], '1.0.0'), { cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0'] });
  });

  describe('withIpamCleanup', () => {
    const ctx = { log: nullLogger, conf: { cniVersion: '1.1.0', name: 'n', type: 't' } } as unknown as Context;
    const recorder = (addFails = false, delFails = false) => {
      const calls: string[] = [];
      const runner: IpamRunner = async (cmd) => {
        calls.push(cmd);
        if (cmd === 'ADD' && addFails) throw new CniError(102, 'no free address');
        if (cmd === 'DEL' && delFails) throw new Error('del broke');
        return cmd === 'ADD' ? ({ cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24' }] } as Result) : undefined;
      };
      return { calls, runner };
    };
    it('success: ADD then rest, no DEL', async () => {
      const { calls, runner } = recorder();
      const out = await withIpamCleanup(ctx, runner, async (r) => r.ips![0]!.address);
      assert.equal(out, '10.0.0.2/24');
      assert.deepEqual(calls, ['ADD']);
    });
    it('rest fails: DEL, then the original error', async () => {
      const { calls, runner } = recorder();
      await assert.rejects(withIpamCleanup(ctx, runner, async () => { throw new CniError(100, 'veth refused'); }), isErr(100, /veth refused/));
      assert.deepEqual(calls, ['ADD', 'DEL']);
    });
    it('IPAM ADD fails: DEL too (spec section 4), original error kept', async () => {
      const { calls, runner } = recorder(true);
      await assert.rejects(withIpamCleanup(ctx, runner, async () => 1), isErr(102, /no free address/));
      assert.deepEqual(calls, ['ADD', 'DEL']);
    });
    it('a failing DEL does not mask the original error', async () => {
      const { calls, runner } = recorder(false, true);
      await assert.rejects(withIpamCleanup(ctx, runner, async () => { throw new CniError(104, 'conflict'); }), isErr(104, /conflict/));
      assert.deepEqual(calls, ['ADD', 'DEL']);
    });
  });
});
