// Regression tests for the defect classes the fuzz suite (test/fuzz, issue 14) found, each at the
// layer that now refuses the input (docs/errors.md says which code each class gets).
import assert from 'node:assert/strict';
import { dispatch, type Plugin } from '../../pkg/cni/skel';
import { decodeConfObject, jsonDepth, MAX_NESTING, versionRequest } from '../../pkg/cni/conf';
import { CniError } from '../../pkg/cni/errors';
import { NetlinkError } from '../../pkg/netlink/errors';
import { hostLocal } from '../../plugins/ipam/host-local/plugin';

const nested = (n: number): string => `{"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/valid-attachments":[],"deep":${'['.repeat(n - 1)}${']'.repeat(n - 1)}}`;

/** A plugin that would stringify its config (as knit-overlay does for its synthesized knit-bridge config). */
const stringifier: Plugin = {
  name: 'stringifier',
  add: async (ctx) => { JSON.stringify(ctx.conf); return { cniVersion: '1.1.0', ips: [] } as any; },
  del: async (ctx) => { JSON.stringify(ctx.conf); },
  check: async () => undefined,
  status: async (ctx) => { JSON.stringify(ctx.conf); },
  gc: async (ctx) => { JSON.stringify(ctx.conf); },
  skipNetnsCheck: true,
};

describe('fuzz regressions (issue 14)', () => {
  describe('configs nested deeper than the call stack: code 6 at decode, never "unexpected failure"', () => {
    it(`jsonDepth counts brackets outside strings and stops past the limit`, () => {
      assert.equal(jsonDepth('{"a":[1,{"b":"[[[["}]}'), 3);
      assert.equal(jsonDepth('"\\"[[["'), 0);
      assert.equal(jsonDepth('['.repeat(1_000_000)), MAX_NESTING + 1);
    });

    it(`${MAX_NESTING} levels decode; one more is code 6 naming the limit`, () => {
      assert.equal(typeof decodeConfObject(nested(MAX_NESTING)).deep, 'object');
      assert.throws(() => decodeConfObject(nested(MAX_NESTING + 1)), (e: unknown) => e instanceof CniError && e.code === 6 && /nested more than 1000 levels/.test(e.message));
    });

    for (const verb of ['ADD', 'DEL', 'STATUS', 'GC']) {
      it(`${verb} of a config nested 200000 levels deep: code 6, no stack on stderr`, async () => {
        let stderr = '';
        const out = await dispatch(stringifier, { CNI_COMMAND: verb, CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0' },
          Buffer.from(nested(200_000)), { stderr: (l) => { stderr += l; } });
        assert.equal(out.exitCode, 1);
        assert.equal(JSON.parse(out.stdout).code, 6, out.stdout);
        assert.doesNotMatch(stderr, /unexpected failure|\n\s+at /);
      });
    }

    it('an unclosed 10^6-deep document is code 6 quickly (the offset scan is skipped, not overflowed)', async () => {
      const t0 = Date.now();
      const out = await dispatch(stringifier, { CNI_COMMAND: 'GC' }, Buffer.from('['.repeat(1_000_000)));
      assert.equal(JSON.parse(out.stdout).code, 6);
      assert.ok(Date.now() - t0 < 2000, `${Date.now() - t0} ms`);
    });
  });

  describe('CNI_CONTAINERID longer than a file name allows: code 4 naming it', () => {
    for (const verb of ['ADD', 'DEL', 'CHECK']) {
      it(`${verb} with a 300-character ID`, async () => {
        const out = await dispatch(stringifier, { CNI_COMMAND: verb, CNI_CONTAINERID: 'c'.repeat(300), CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0' },
          Buffer.from('{"cniVersion":"1.0.0","name":"n","type":"t"}'));
        const err = JSON.parse(out.stdout);
        assert.equal(err.code, 4);
        assert.match(err.msg, /^invalid CNI_CONTAINERID .*at most 200 characters/);
      });
    }
  });

  describe('a network name longer than a file name allows: code 7 naming it, on every verb', () => {
    for (const verb of ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC']) {
      it(`knit-host-local ${verb} with a 300-character name (was ENAMETOOLONG, code 5, on DEL)`, async () => {
        const conf = { cniVersion: '1.1.0', name: 'n'.repeat(300), type: 'knit-host-local', 'cni.dev/valid-attachments': [],
          ipam: { type: 'knit-host-local', dataDir: '/nonexistent-knit-test', ranges: [[{ subnet: '10.1.0.0/24' }]] } };
        const out = await dispatch(hostLocal, { CNI_COMMAND: verb, CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0' }, Buffer.from(JSON.stringify(conf)));
        const err = JSON.parse(out.stdout);
        assert.equal(err.code, 7, out.stdout);
        assert.match(err.msg, /^invalid name "n+\.\.\.: a network name of at most 200 characters/);
      });
    }
  });

  describe('a netlink request the kernel refuses: code 100 with errno and extack, not "unexpected failure"', () => {
    it('a plugin that meets a NetlinkError answers 100 and logs no stack', async () => {
      const refusing: Plugin = { ...stringifier, add: async () => { throw new NetlinkError('RTM_NEWROUTE 0.0.0.0/0 via 224.0.0.1 dev 5', 101, 'Nexthop has invalid gateway'); } };
      let stderr = '';
      const out = await dispatch(refusing, { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', KNIT_LOG_LEVEL: 'debug' },
        Buffer.from('{"cniVersion":"1.0.0","name":"n","type":"t"}'), { stderr: (l) => { stderr += l; } });
      const err = JSON.parse(out.stdout);
      assert.equal(err.code, 100, out.stdout);
      assert.match(err.msg, /^the kernel refused RTM_NEWROUTE 0\.0\.0\.0\/0 via 224\.0\.0\.1 dev 5: .*\(ENETUNREACH\)/);
      assert.equal(err.details, 'errno ENETUNREACH; extack: Nexthop has invalid gateway');
      assert.doesNotMatch(stderr, /unexpected failure|\n\s+at /);
    });
  });

  describe('VERSION with a NUL byte: code 6 without a position (the launcher gives the same answer)', () => {
    for (const s of ['\0', '{"cniVersion":"1.0.0"}\0', 'x\0{', '   \0   ']) {
      it(JSON.stringify(s), async () => {
        assert.throws(() => versionRequest(Buffer.from(s)), (e: unknown) => e instanceof CniError && e.code === 6 && /holds a NUL byte/.test(e.message));
        const out = await dispatch(stringifier, { CNI_COMMAND: 'VERSION' }, Buffer.from(s));
        assert.equal(out.stdout, '{"cniVersion":"1.1.0","code":6,"msg":"failed to decode VERSION request on stdin: it holds a NUL byte, which JSON text never does"}');
      });
    }
  });
});
