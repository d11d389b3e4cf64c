import assert from 'node:assert/strict';
import { parseEnv, parseCommand, validateIfName, validateContainerId, splitPath } from '../../pkg/cni/env';
import { CniError } from '../../pkg/cni/errors';

function code4(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof CniError && e.code === 4 && re.test(e.message));
}

const full = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin:/usr/lib/cni' };

describe('cni env', () => {
  it('parses a full ADD environment', () => {
    const e = parseEnv({ ...full, CNI_COMMAND: 'ADD', CNI_ARGS: 'IgnoreUnknown=1' });
    assert.deepEqual(e, { command: 'ADD', containerId: 'c1', netns: '/run/netns/x', ifName: 'eth0', args: 'IgnoreUnknown=1', path: ['/opt/cni/bin', '/usr/lib/cni'] });
  });

  it('CNI_COMMAND missing or unknown → 4 naming the valid verbs', () => {
    code4(() => parseCommand(undefined), /CNI_COMMAND is required: one of ADD, DEL, CHECK, STATUS, GC, VERSION/);
    code4(() => parseEnv({ ...full, CNI_COMMAND: 'add' }), /invalid CNI_COMMAND "add": one of ADD, DEL/);
    code4(() => parseEnv({ ...full, CNI_COMMAND: 'GET' }), /invalid CNI_COMMAND "GET"/);
  });

  for (const cmd of ['ADD', 'CHECK'] as const) {
    for (const v of ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'] as const) {
      it(`${cmd}: missing ${v} → 4`, () => {
        code4(() => parseEnv({ ...full, CNI_COMMAND: cmd, [v]: undefined }), new RegExp(`^${v} is required for ${cmd}: `));
        code4(() => parseEnv({ ...full, CNI_COMMAND: cmd, [v]: '' }), new RegExp(`^${v} is required for ${cmd}`));
      });
    }
  }

  it('CNI_NETNS message says what it is', () => {
    code4(() => parseEnv({ ...full, CNI_COMMAND: 'ADD', CNI_NETNS: '' }), /CNI_NETNS is required for ADD: the path of the container's network namespace/);
  });

  it('DEL: CONTAINERID and IFNAME required, NETNS optional', () => {
    code4(() => parseEnv({ ...full, CNI_COMMAND: 'DEL', CNI_CONTAINERID: '' }), /CNI_CONTAINERID is required for DEL/);
    code4(() => parseEnv({ ...full, CNI_COMMAND: 'DEL', CNI_IFNAME: undefined }), /CNI_IFNAME is required for DEL/);
    const e = parseEnv({ ...full, CNI_COMMAND: 'DEL', CNI_NETNS: '' });
    assert.equal(e.netns, '');
    assert.equal(parseEnv({ ...full, CNI_COMMAND: 'DEL', CNI_NETNS: 'relative' }).netns, 'relative');
  });

  for (const cmd of ['STATUS', 'GC', 'VERSION'] as const) {
    it(`${cmd}: needs none of the attachment variables and ignores bad ones`, () => {
      const e = parseEnv({ CNI_COMMAND: cmd, CNI_IFNAME: 'bad/name', CNI_CONTAINERID: '../x' });
      assert.equal(e.command, cmd);
      assert.equal(e.containerId, '');
      assert.equal(e.ifName, '');
      assert.equal(e.netns, '');
    });
  }

  it('ADD: CNI_NETNS must be absolute', () => {
    code4(() => parseEnv({ ...full, CNI_COMMAND: 'ADD', CNI_NETNS: 'netns/x' }), /invalid CNI_NETNS "netns\/x": an absolute path/);
  });

  describe('CNI_CONTAINERID', () => {
    for (const ok of ['abc', 'A1', '0', 'a_b.c-d', 'f'.repeat(64)]) {
      it(`accepts ${JSON.stringify(ok)}`, () => validateContainerId(ok));
    }
    it('accepts 200 characters, refuses 201 (issue 14: IDs end up in file names, which hold 255 bytes)', () => {
      validateContainerId('a'.repeat(200));
      for (const cmd of ['ADD', 'DEL', 'CHECK']) {
        code4(() => parseEnv({ ...full, CNI_COMMAND: cmd, CNI_CONTAINERID: 'a'.repeat(201) }), /^invalid CNI_CONTAINERID "a{20,}\.\.\.: a container ID of at most 200 characters/);
      }
    });
    for (const bad of ['/x', 'a/b', '..', '.a', '-a', '_a', 'a b', 'a\tb', 'a\nb', 'a:b', 'ü', '../../etc']) {
      it(`rejects ${JSON.stringify(bad)} naming variable, value and rule`, () => {
        code4(() => parseEnv({ ...full, CNI_COMMAND: 'ADD', CNI_CONTAINERID: bad }),
          /^invalid CNI_CONTAINERID ".*": a container ID of at most 200 characters: an alphanumeric character, then alphanumerics, "_", "." or "-"$/);
      });
    }
  });

  describe('CNI_IFNAME', () => {
    for (const ok of ['eth0', 'a', 'x'.repeat(15), 'net1.100', 'veth-a_b', '..a']) {
      it(`accepts ${JSON.stringify(ok)}`, () => validateIfName(ok));
    }
    for (const bad of ['.', '..', 'x'.repeat(16), 'eth0/x', 'eth0:1', 'eth 0', 'eth\t0', 'eth\n0', 'éééééééé']) {
      it(`rejects ${JSON.stringify(bad)}`, () => {
        code4(() => parseEnv({ ...full, CNI_COMMAND: 'ADD', CNI_IFNAME: bad }), /^invalid CNI_IFNAME ".*": an interface name of 1-15 bytes without '\/', ':' or whitespace/);
      });
    }
    it('message matches the documented form', () => {
      code4(() => validateIfName('eth0/x'), /^invalid CNI_IFNAME "eth0\/x": an interface name of 1-15 bytes without '\/', ':' or whitespace/);
    });
  });

  it('splits CNI_PATH dropping empty entries', () => {
    assert.deepEqual(splitPath('/a::/b:'), ['/a', '/b']);
    assert.deepEqual(splitPath(undefined), []);
  });
});
