// Builds one executable per cmd/<name>/main.ts into dist/bin/<name>, and copies the
// native netlink addon and the knitd client (knit-client) to dist/lib, where the bundles and
// the launcher find them.
import { build } from 'esbuild';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('.', import.meta.url).pathname;

// The versions VERSION answers with, from their one home in pkg/cni/version.ts.
const versionSrc = readFileSync(join(root, 'pkg/cni/version.ts'), 'utf8');
const supported = /SUPPORTED_VERSIONS[^=]*=\s*\[([^\]]*)\]/.exec(versionSrc)?.[1]?.match(/\d+\.\d+\.\d+/g);
const latest = /LATEST_VERSION\s*=\s*'([\d.]+)'/.exec(versionSrc)?.[1];
if (!supported?.length || !latest) throw new Error('esbuild.config: cannot read SUPPORTED_VERSIONS/LATEST_VERSION from pkg/cni/version.ts');

// The launcher (cmd/launcher.sh) heads every bundle; it answers VERSION without Node.
const banner = readFileSync(join(root, 'cmd/launcher.sh'), 'utf8').trimEnd()
  .replaceAll('@LATEST@', latest)
  .replaceAll('@SUPPORTED_ALT@', supported.join('|'))
  .replaceAll('@SUPPORTED_JSON@', supported.map((x) => `"${x}"`).join(','));

const names = readdirSync(join(root, 'cmd'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'cmd', d.name, 'main.ts')))
  .map((d) => d.name);

mkdirSync(join(root, 'dist/bin'), { recursive: true });
mkdirSync(join(root, 'dist/lib'), { recursive: true });

await Promise.all(names.map((name) => build({
  entryPoints: [join(root, 'cmd', name, 'main.ts')],
  outfile: join(root, 'dist/bin', name),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  banner: { js: banner },
  // @kubernetes/client-node (15 MB bundled, ~0.2 s more at every knitd start) stays out of every
  // executable: only knitd --datastore kubernetes loads it, from dist/lib/kube-client.js (below)
  // or else node_modules (pkg/kube/client.ts).
  external: ['*.node', '@kubernetes/client-node'],
  legalComments: 'none',
  logLevel: 'warning',
})));
// The Kubernetes client as one CommonJS file beside the addon, for knitd --datastore kubernetes.
await build({
  stdin: { contents: "module.exports = require('@kubernetes/client-node');", resolveDir: root, loader: 'js' },
  outfile: join(root, 'dist/lib/kube-client.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  legalComments: 'none',
  logLevel: 'warning',
});
for (const name of names) chmodSync(join(root, 'dist/bin', name), 0o755);
// Node looks up the nearest package.json for every module it loads; stopping the walk at
// dist/ saves ~3 ms of each plugin start.
writeFileSync(join(root, 'dist/package.json'), '{"type":"commonjs"}\n');

const addon = join(root, 'build/Release/knit_netlink.node');
if (existsSync(addon)) copyFileSync(addon, join(root, 'dist/lib/knit_netlink.node'));
else console.error('esbuild.config: build/Release/knit_netlink.node missing; run npm install');
// The knitd client, which the launcher finds at bin/../lib/knit-client.
const client = join(root, 'build/Release/knit-client');
if (existsSync(client)) {
  copyFileSync(client, join(root, 'dist/lib/knit-client'));
  chmodSync(join(root, 'dist/lib/knit-client'), 0o755);
} else console.error('esbuild.config: build/Release/knit-client missing; run npm install');
console.error(`built ${names.length} executables into dist/bin: ${names.join(' ')}`);
