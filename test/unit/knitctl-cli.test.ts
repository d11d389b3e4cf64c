// knitctl's command line (cmd/knitctl/cli.ts on yargs), in-process, without root or etcd: the help
// of every command, suggestions for a mistyped command, the one error style (`knitctl: <message>`,
// exit code 2 for usage errors and 1 for failures), the deprecated `network set/get`, completion,
// and the etcd flags as an etcd connection.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { etcdConfFromArgs, run, table } from '../../cmd/knitctl/main';

// Nothing listens on port 1: refused at once, no etcd needed.
const NO_ETCD = ['--etcd-endpoints', 'http://127.0.0.1:1', '--etcd-timeout', '300'];
const noSleep = async (): Promise<void> => { throw new Error('no wait expected'); };
const knitctl = (...argv: string[]): ReturnType<typeof run> => run(argv, noSleep, {});

async function usageError(argv: string[], message: string, see: string): Promise<void> {
  const r = await knitctl(...argv);
  assert.deepEqual(r, { code: 2, out: '', err: `knitctl: ${message}\nSee '${see}'.\n` }, argv.join(' '));
}

describe('knitctl: help', () => {
  it('knitctl --help lists every command group, the etcd flags, and no hidden command', async () => {
    const r = await knitctl('--help');
    assert.equal(r.code, 0);
    assert.equal(r.err, '');
    for (const c of ['ipam', 'pod-network', 'status', 'peers', 'inspect', 'node', 'network', 'attach', 'detach', 'key', 'completion']) {
      assert.match(r.out, new RegExp(`^  knitctl ${c} `, 'm'), c);
    }
    assert.match(r.out, /^etcd flags:$/m);
    assert.match(r.out, /^Flags:\n  -h, --help +show help/m);
    for (const f of ['endpoints', 'prefix', 'cafile', 'certfile', 'keyfile', 'username', 'password', 'timeout']) assert.match(r.out, new RegExp(`--etcd-${f} `));
    assert.doesNotMatch(r.out, /knitctl network (set|get)/, 'network set/get are hidden');
    assert.deepEqual(await knitctl('-h'), r);
  });

  const helps: Array<[string[], RegExp[], RegExp[]]> = [
    [['ipam'], [/^knitctl ipam <command>$/m, /knitctl ipam ls \[network\] +who holds which address/, /knitctl ipam gc +release/], []],
    [['ipam', 'ls'], [/^knitctl ipam ls \[network\]$/m, /--network /, /--node /, /--json /, /--etcd-endpoints /], [/--pods/]],
    [['ipam', 'gc'], [/^knitctl ipam gc$/m, /--node /, /--pods /, /--keep /, /--kubeconfig /, /--grace /, /--dry-run /, /--json /, /knitctl ipam gc --pods --dry-run/], []],
    [['pod-network'], [/^knitctl pod-network <command>$/m, /knitctl pod-network set <file> +validate/, /knitctl pod-network get +show/], [/knitctl network set/]],
    [['pod-network', 'set'], [/^knitctl pod-network set <file>$/m, /^ +file +JSON: /m], []],
    [['pod-network', 'get'], [/^knitctl pod-network get$/m], []],
    [['status'], [/^knitctl status$/m, /--run-dir /, /--json /], []],
    [['peers'], [/^knitctl peers$/m, /--json /, /--run-dir /], []],
    [['status', 'peers'], [/^knitctl status peers$/m, /--run-dir /, /--json /], []],
    [['status', 'connections'], [/^knitctl status connections$/m, /--run-dir /, /--json /], []],
    [['inspect'], [/^knitctl inspect$/m, /--run-dir /], [/--json/]],
    [['node'], [/^knitctl node <command>$/m, /knitctl node rm <name> +decommission/], []],
    [['node', 'rm'], [/^knitctl node rm <name>$/m, /^ +name +the node name/m], []],
    [['attach'], [/^knitctl attach <network> <target>$/m, /--ip /, /--ifname /, /--mac /, /--alias /, /--cni-conf-dir /, /--cni-path /, /--cni-cache-dir /, /--podman-root /, /weave attach/], []],
    [['detach'], [/^knitctl detach <network> <target>$/m, /--ifname /, /--cni-cache-dir /], [/--ip /, /--mac /]],
  ];
  for (const [words, has, hasNot] of helps) {
    it(`knitctl ${words.join(' ')} --help`, async () => {
      const r = await knitctl(...words, '--help');
      assert.equal(r.code, 0, r.err);
      assert.equal(r.err, '');
      for (const re of has) assert.match(r.out, re);
      for (const re of hasNot) assert.doesNotMatch(r.out, re);
      assert.deepEqual(await knitctl(...words, '-h'), r, '-h');
    });
  }

  it('a missing command: that level\'s help on stderr, then the message, exit code 2', async () => {
    const top = await knitctl();
    assert.equal(top.code, 2);
    assert.equal(top.out, '');
    assert.ok(top.err.startsWith('usage: knitctl <command> [flags]\n'), top.err);
    assert.ok(top.err.endsWith('\n\nknitctl: missing command\n'), top.err);
    const ipam = await knitctl('ipam');
    assert.equal(ipam.code, 2);
    assert.ok(ipam.err.startsWith('knitctl ipam <command>\n'), ipam.err);
    assert.ok(ipam.err.endsWith("\n\nknitctl: missing command after 'ipam'\n"), ipam.err);
  });

  it('knitctl completion prints the bash script; --get-yargs-completions answers commands and flags', async () => {
    const script = await knitctl('completion');
    assert.equal(script.code, 0);
    assert.match(script.out, /^###-begin-knitctl-completions-###$/m);
    assert.match(script.out, /knitctl --get-yargs-completions/);
    assert.match(script.out, /complete -o bashdefault -o default -F _knitctl_yargs_completions knitctl/);
    const words = async (...argv: string[]): Promise<string[]> => (await knitctl('--get-yargs-completions', 'knitctl', ...argv)).out.trim().split('\n');
    assert.deepEqual(await words(''), ['ipam', 'pod-network', 'status', 'peers', 'inspect', 'node', 'network', 'attach', 'detach', 'service', 'dns', 'key', 'completion']);
    assert.deepEqual(await words('ipam', ''), ['ls', 'gc']);
    assert.ok((await words('ipam', 'gc', '--')).includes('--pods'));
  });
});

describe('knitctl: errors', () => {
  it('a mistyped command: the suggestion, exit code 2; a hidden command is never suggested', async () => {
    await usageError(['ipma', 'ls'], 'unknown command "ipma": did you mean "ipam"?', 'knitctl --help');
    await usageError(['ipam', 'lss'], 'unknown command "lss": did you mean "ls"?', 'knitctl ipam --help');
    await usageError(['pod-netwrk', 'get'], 'unknown command "pod-netwrk": did you mean "pod-network"?', 'knitctl --help');
    await usageError(['node', 'remove', 'n1'], 'unknown command "remove"', 'knitctl node --help');
    await usageError(['netwrk', 'ls'], 'unknown command "netwrk": did you mean "network"?', 'knitctl --help');
    await usageError(['network', 'st'], 'unknown command "st"', 'knitctl network --help');
  });

  it('unknown flags (flags are per command), missing values and arguments: exit code 2, one style', async () => {
    await usageError(['ipam', 'ls', '--nope'], 'unknown flag --nope', 'knitctl ipam ls --help');
    await usageError(['ipam', 'ls', '--nope=1'], 'unknown flag --nope', 'knitctl ipam ls --help');
    await usageError(['ipam', 'ls', '-x'], 'unknown flag -x', 'knitctl ipam ls --help');
    await usageError(['ipam', 'ls', '--no-json'], 'unknown flag --no-json', 'knitctl ipam ls --help');
    await usageError(['ipam', 'ls', '--etcdEndpoints', 'http://a:1'], 'unknown flag --etcdEndpoints', 'knitctl ipam ls --help');
    await usageError(['peers', '--keep', '1'], 'unknown flag --keep', 'knitctl peers --help');
    await usageError(['ipam', 'ls', '--network'], '--network needs a value', 'knitctl ipam ls --help');
    await usageError(['ipam', 'ls', '--network='], '--network needs a value', 'knitctl ipam ls --help');
    await usageError(['ipam', 'ls', '--json=x'], '--json takes no value', 'knitctl ipam ls --help');
    await usageError(['node', 'rm'], 'missing argument (usage: knitctl node rm <name>)', 'knitctl node rm --help');
    await usageError(['node', 'rm', 'a', 'b'], 'unexpected argument "b" (usage: knitctl node rm <name>)', 'knitctl node rm --help');
    await usageError(['peers', 'extra'], 'unexpected argument "extra" (usage: knitctl peers)', 'knitctl peers --help');
  });

  it('the commands\' own checks are usage errors too, before any etcd request', async () => {
    await usageError(['ipam', 'gc', ...NO_ETCD], 'ipam gc needs --node N (the node whose addresses to release)', 'knitctl ipam gc --help');
    await usageError(['ipam', 'gc', '--node', 'a b', ...NO_ETCD], 'invalid --node "a b": a node name', 'knitctl ipam gc --help');
    await usageError(['ipam', 'gc', '--node', 'n1', '--keep', 'nocolon', ...NO_ETCD], 'invalid --keep entry "nocolon": CONTAINERID:IFNAME', 'knitctl ipam gc --help');
    await usageError(['ipam', 'gc', '--pods', '--keep', 'c:eth0', ...NO_ETCD], '--keep goes with --node N alone, not with --pods', 'knitctl ipam gc --help');
    await usageError(['ipam', 'gc', '--pods', '--grace', '-1', ...NO_ETCD], 'invalid --grace -1: whole seconds ≥ 0 between the two looks', 'knitctl ipam gc --help');
    const r = await knitctl('peers', '--etcd-endpoints', 'ftp://x');
    assert.equal(r.code, 2);
    assert.match(r.err, /^knitctl: invalid --etcd-endpoints "ftp:\/\/x": an http:\/\/ or https:\/\/ URL/);
  });

  it('a failure: one line `knitctl: <message>`, exit code 1', async () => {
    const r = await knitctl('peers', ...NO_ETCD);
    assert.equal(r.code, 1);
    assert.equal(r.out, '');
    assert.match(r.err, /^knitctl: etcd unavailable: no endpoint of http:\/\/127\.0\.0\.1:1 answered .* within 300 ms.*\n$/);
    assert.equal(r.err.split('\n').length, 2, 'one line');
    const gone = await knitctl('pod-network', 'set', '/nonexistent/network.json', ...NO_ETCD);
    assert.equal(gone.code, 1);
    assert.match(gone.err, /^knitctl: ENOENT: no such file or directory, open '\/nonexistent\/network\.json'\n$/);
  });

  it('etcd flags go before or after the command words; given twice, the last one', async () => {
    for (const argv of [['--etcd-endpoints', 'ftp://y', 'peers'], ['peers', '--etcd-endpoints=ftp://y'], ['peers', '--etcd-endpoints', 'ftp://x', '--etcd-endpoints', 'ftp://y']]) {
      const r = await knitctl(...argv);
      assert.equal(r.code, 2, argv.join(' '));
      assert.match(r.err, /^knitctl: invalid --etcd-endpoints "ftp:\/\/y"/, argv.join(' '));
    }
  });
});

describe('knitctl: pod-network and the deprecated network set/get', () => {
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knitctl-cli-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const WARN = (verb: string): string => `knitctl: 'knitctl network ${verb}' is deprecated: use 'knitctl pod-network ${verb}' ('network' is for named networks)\n`;

  it('pod-network set validates the file before storing it (code 1, naming the key)', async () => {
    const bad = path.join(tmp, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ network: '10.216.0.0/16', subnetLen: 8 }));
    const r = await knitctl('pod-network', 'set', bad, ...NO_ETCD);
    assert.equal(r.code, 1);
    assert.match(r.err, /^knitctl: .*subnetLen 8/);
  });

  it('network set/get still work as before, after one warning line pointing at pod-network', async () => {
    const bad = path.join(tmp, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ network: '10.216.0.0/16', subnetLen: 8 }));
    const now = await knitctl('pod-network', 'set', bad, ...NO_ETCD);
    const old = await knitctl('network', 'set', bad, ...NO_ETCD);
    assert.deepEqual(old, { ...now, err: WARN('set') + now.err });
    const getNow = await knitctl('pod-network', 'get', ...NO_ETCD);
    const getOld = await knitctl('--etcd-endpoints', 'http://127.0.0.1:1', 'network', 'get', '--etcd-timeout', '300');
    assert.equal(getOld.code, 1);
    assert.equal(getOld.err, WARN('get') + getNow.err);
    const help = await knitctl('network', 'get', '--help');
    assert.equal(help.code, 0);
    assert.equal(help.err, WARN('get'));
    assert.match(help.out, /deprecated: knitctl pod-network get/);
    const missing = await knitctl('network', 'set');
    assert.equal(missing.code, 2);
    assert.ok(missing.err.startsWith(WARN('set') + 'knitctl: missing argument (usage: knitctl network set <file>)\n'), missing.err);
  });

  it('the network group shows Docker\'s verbs and hides set/get; create checks its flags before etcd', async () => {
    const h = await knitctl('network', '--help');
    assert.equal(h.code, 0);
    for (const v of ['create <name>', 'ls', 'inspect <names..>', 'rm <names..>']) assert.match(h.out, new RegExp(`knitctl network ${v.replace(/[.<>]/g, '\\$&')} `), v);
    assert.doesNotMatch(h.out, /network (set|get)/);
    await usageError(['network', 'create'], 'missing argument (usage: knitctl network create <name>)', 'knitctl network create --help');
    await usageError(['network', 'create', '-d', 'ipvlan', 'n'], 'invalid --driver "ipvlan": one of overlay, bridge, macvlan', 'knitctl network create --help');
    await usageError(['network', 'create', 'host'], 'invalid network name "host": a name other than bridge, host, none, default, podman (reserved by runtimes)', 'knitctl network create --help');
    await usageError(['network', 'create', 'n', '--subnet'], '--subnet needs a value', 'knitctl network create --help');
  });
});

describe('knitctl: etcd connection and tables', () => {
  it('builds the etcd config from the flags, then the environment', () => {
    const e = etcdConfFromArgs({ _: [], 'etcd-endpoints': 'https://a:1, https://b:2', 'etcd-cafile': '/ca', 'etcd-certfile': '/c', 'etcd-keyfile': '/k', 'etcd-prefix': '/p', 'etcd-timeout': '700' }, {});
    assert.deepEqual(e.endpoints, ['https://a:1', 'https://b:2']);
    assert.deepEqual(e.tls, { ca: '/ca', cert: '/c', key: '/k' });
    assert.deepEqual({ p: e.prefix, t: e.timeoutMs }, { p: '/p', t: 700 });
    assert.deepEqual(etcdConfFromArgs({ _: [] }, { KNIT_ETCD_ENDPOINTS: 'http://e:2379' }).endpoints, ['http://e:2379']);
    assert.equal(etcdConfFromArgs({ _: [], 'etcd-username': 'u' }, { KNIT_ETCD_PASSWORD: 'pw' }).password, 'pw');
    assert.throws(() => etcdConfFromArgs({ _: [], 'etcd-endpoints': 'ftp://x' }, {}), /--etcd-endpoints/);
    assert.throws(() => etcdConfFromArgs({ _: [], 'etcd-endpoints': 'http://a:1', 'etcd-keyfile': '/k' }, {}), /--etcd-certfile\/--etcd-keyfile/);
  });

  it('tables align columns', () => {
    assert.equal(table(['A', 'BB'], [['xxx', 'y']]), 'A    BB\nxxx  y');
  });
});
