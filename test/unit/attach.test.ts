// The pure parts of knitctl attach/detach, without root: conflists from a config directory as
// libcni picks them, each plugin's stdin as libcni's buildOneConfig makes it, libcni's result
// cache (names with '-' that prefix each other), the next free ethN, and the unknown-network
// message. The chain against real plugins and libcni itself: test/integration/attach.test.ts.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findConfList, parseConf, parseConfList, readConfDir } from '../../pkg/cni/conflist';
import { capabilitiesOf, cniArgsString, pluginConf, runtimeConfigFor } from '../../pkg/cni/chain';
import { cacheEntry, cacheFile, cachedConfList, listCached, readCached, removeCached, writeCached } from '../../pkg/cni/cache';
import { AttachError, networkConf } from '../../pkg/attach/attach';
import { netnsContainerId, nextFreeIfName } from '../../pkg/attach/target';

const b = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));

describe('attach: conflists', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-attach-unit-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('parses a conflist, naming the bad key of a bad one', () => {
    const l = parseConfList(b({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'a' }, { type: 'b', x: 1 }] }), 'f');
    assert.equal(l.name, 'n');
    assert.deepEqual(l.plugins.map((p) => p.type), ['a', 'b']);
    assert.throws(() => parseConfList(b({ cniVersion: '1.0.0', name: 'n', plugins: [] }), 'f'), /^CniError: f: invalid plugins \[\]: a non-empty list/);
    assert.throws(() => parseConfList(b({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'a' }, {}] }), 'f'), /f: invalid plugins\[1\]\.type undefined: the plugin executable name/);
    assert.throws(() => parseConfList(b({ cniVersion: '1.0.0', plugins: [{ type: 'a' }] }), 'f'), /f: invalid name undefined/);
    assert.throws(() => parseConfList(Buffer.from('{'), 'f'), /f: not JSON/);
  });

  it('a single-plugin .conf is a list of one, its bytes that list', () => {
    const l = parseConf(b({ cniVersion: '0.4.0', name: 'one', type: 'bridge', bridge: 'x' }));
    assert.equal(l.plugins.length, 1);
    assert.equal(l.plugins[0]!.bridge, 'x');
    assert.deepEqual(JSON.parse(l.bytes.toString()).plugins[0].type, 'bridge');
  });

  it('reads a directory in libcni\'s order: .conflist files by name before .conf/.json; broken files skipped with why', () => {
    fs.writeFileSync(path.join(dir, '20-b.conflist'), b({ cniVersion: '1.0.0', name: 'dup', plugins: [{ type: 'second' }] }));
    fs.writeFileSync(path.join(dir, '10-a.conflist'), b({ cniVersion: '1.0.0', name: 'dup', plugins: [{ type: 'first' }] }));
    fs.writeFileSync(path.join(dir, '00-c.conf'), b({ cniVersion: '1.0.0', name: 'single', type: 'conf' }));
    fs.writeFileSync(path.join(dir, '30-bad.conflist'), '{"name": 1}');
    fs.writeFileSync(path.join(dir, 'README'), 'not a config');
    const d = readConfDir(dir);
    assert.deepEqual(d.lists.map((l) => path.basename(l.file!)), ['10-a.conflist', '20-b.conflist', '00-c.conf']);
    assert.equal(findConfList(d, 'dup')!.plugins[0]!.type, 'first');
    assert.equal(findConfList(d, 'single')!.plugins[0]!.type, 'conf');
    assert.equal(findConfList(d, 'none'), null);
    assert.deepEqual(d.skipped.map((s) => [path.basename(s.file), s.why]), [['30-bad.conflist', 'invalid name 1: the network name (a non-empty string)']]);
    assert.deepEqual(readConfDir(path.join(dir, 'missing')), { lists: [], skipped: [] });
  });

  it('an unknown network: the networks that exist, and the broken conflists', () => {
    fs.writeFileSync(path.join(dir, 'a.conflist'), b({ cniVersion: '1.0.0', name: 'web', plugins: [{ type: 'x' }] }));
    fs.writeFileSync(path.join(dir, 'b.conflist'), b({ cniVersion: '1.0.0', name: 'db', plugins: [{ type: 'x' }] }));
    fs.writeFileSync(path.join(dir, 'c.conflist'), '[]');
    fs.writeFileSync(path.join(dir, 'stray.json'), '[]');
    assert.throws(() => networkConf(dir, 'wbe'), (e: Error) => e instanceof AttachError && !e.usage &&
      e.message === `unknown NETWORK "wbe": the networks in ${dir} are db, web; skipped as unreadable: ${dir}/c.conflist (invalid document []: a JSON object)`);
    assert.throws(() => networkConf(path.join(dir, 'nope'), 'x'), /unknown NETWORK "x": \S+nope holds no network config$/);
  });
});

describe('attach: each plugin\'s stdin (libcni buildOneConfig)', () => {
  const list = parseConfList(b({
    cniVersion: '1.0.0', name: 'net',
    plugins: [
      { type: 'main', name: 'ignored', cniVersion: '0.3.1', capabilities: { ips: true, mac: false, aliases: true }, runtimeConfig: { old: 1 }, prevResult: { stale: true } },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  }));
  const rt = { containerId: 'c', netns: '/run/netns/x', ifName: 'eth1', capabilityArgs: { ips: ['10.0.0.5/24'], mac: '02:00:00:00:00:01', portMappings: [] } };

  it('the list\'s name and version, only declared capabilities in runtimeConfig, prevResult only when there is one', () => {
    const first = pluginConf(list, list.plugins[0]!, undefined, rt);
    assert.deepEqual(first, { type: 'main', name: 'net', cniVersion: '1.0.0', capabilities: { ips: true, mac: false, aliases: true }, runtimeConfig: { ips: ['10.0.0.5/24'] } });
    const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'eth1' }] };
    const second = pluginConf(list, list.plugins[1]!, prev, rt);
    assert.deepEqual(second.prevResult, prev);
    assert.deepEqual(second.runtimeConfig, { portMappings: [] });
    assert.equal(pluginConf(list, list.plugins[1]!, undefined, { ...rt, capabilityArgs: {} }).runtimeConfig, undefined);
    assert.equal(runtimeConfigFor({ type: 'x' }, rt.capabilityArgs), undefined);
    assert.deepEqual([...capabilitiesOf(list)].sort(), ['aliases', 'ips', 'portMappings']);
    assert.equal(cniArgsString([['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'p']]), 'IgnoreUnknown=1;K8S_POD_NAME=p');
    assert.equal(cniArgsString(), '');
  });
});

describe('attach: libcni\'s result cache', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-attach-cache-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const list = (name: string) => parseConfList(b({ cniVersion: '1.0.0', name, plugins: [{ type: 'x' }] }));

  it('writes libcni\'s shape at libcni\'s path; reads, lists by network and container, removes', () => {
    const e = cacheEntry(list('net'), { containerId: 'knit-ns-1', ifName: 'eth0', netns: '/run/netns/a', capabilityArgs: {}, result: { cniVersion: '1.0.0' } });
    assert.deepEqual(Object.keys(e), ['kind', 'containerId', 'config', 'ifName', 'networkName', 'netns', 'result'], 'empty args and capabilities omitted, as Go\'s omitempty');
    const file = writeCached(dir, e);
    assert.equal(file, cacheFile(dir, 'net', 'knit-ns-1', 'eth0'));
    assert.equal(file, path.join(dir, 'results', 'net-knit-ns-1-eth0'));
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(dir, 'results')).mode & 0o777, 0o700);
    assert.deepEqual(readCached(dir, 'net', 'knit-ns-1', 'eth0'), e);
    assert.equal(cachedConfList(e).name, 'net');
    // "net-knit" is another network whose file names start like net's: told apart by the fields.
    // (net-knit/ns-1/eth0 would be the very file of net/knit-ns-1/eth0: libcni's naming, not ours to fix.)
    writeCached(dir, cacheEntry(list('net-knit'), { containerId: 'ns-2', ifName: 'eth0', result: {} }));
    writeCached(dir, cacheEntry(list('net'), { containerId: 'knit-ns-1', ifName: 'eth1', result: {} }));
    writeCached(dir, cacheEntry(list('net'), { containerId: 'knit-ns-12', ifName: 'eth0', result: {} }));
    fs.writeFileSync(path.join(dir, 'results', 'net-legacy-eth0'), '{"cniVersion":"0.3.1"}');
    assert.deepEqual(listCached(dir, 'net', 'knit-ns-1').map((x) => x.ifName), ['eth0', 'eth1']);
    assert.deepEqual(listCached(dir, 'net').map((x) => `${x.containerId}/${x.ifName}`), ['knit-ns-1/eth0', 'knit-ns-1/eth1', 'knit-ns-12/eth0']);
    assert.deepEqual(listCached(dir, 'net-knit').map((x) => x.containerId), ['ns-2']);
    assert.equal(removeCached(dir, 'net', 'knit-ns-1', 'eth0'), true);
    assert.equal(removeCached(dir, 'net', 'knit-ns-1', 'eth0'), false);
    assert.equal(readCached(dir, 'net', 'knit-ns-1', 'eth0'), null);
    assert.deepEqual(listCached(path.join(dir, 'none'), 'net'), []);
    fs.writeFileSync(cacheFile(dir, 'net', 'x', 'eth0'), '{"kind":"other"}');
    assert.throws(() => readCached(dir, 'net', 'x', 'eth0'), /kind "other", expected "cniCacheV1"/);
  });
});

describe('attach: target helpers', () => {
  it('the next free ethN, and the container ID of a netns', () => {
    assert.equal(nextFreeIfName(['lo']), 'eth0');
    assert.equal(nextFreeIfName(['lo', 'eth0', 'eth2']), 'eth1');
    assert.equal(nextFreeIfName(['eth0', 'eth1']), 'eth2');
    assert.equal(netnsContainerId(4026532305n), 'knit-ns-4026532305');
  });
});
