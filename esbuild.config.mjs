// Builds one executable per cmd/<name>/main.ts into dist/bin/<name>, and copies the
// native netlink addon to dist/lib so the bundles find it beside them.
import { build } from 'esbuild';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// A sh/JS polyglot header: sh drops NODE_EXTRA_CA_CERTS (it costs ~60 ms of start-up and
// no plugin needs the system CA bundle) and re-executes the same file with node; for node,
// line 2 is a string statement followed by a comment.
const banner = [
  '#!/bin/sh',
  `':' //; unset NODE_EXTRA_CA_CERTS; exec "\${KNIT_NODE:-node}" "$0" "$@"`,
].join('\n');

const root = new URL('.', import.meta.url).pathname;
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
  external: ['*.node'],
  legalComments: 'none',
  logLevel: 'warning',
})));
for (const name of names) chmodSync(join(root, 'dist/bin', name), 0o755);
// Node looks up the nearest package.json for every module it loads; stopping the walk at
// dist/ saves ~3 ms of each plugin start.
writeFileSync(join(root, 'dist/package.json'), '{"type":"commonjs"}\n');

const addon = join(root, 'build/Release/knit_netlink.node');
if (existsSync(addon)) copyFileSync(addon, join(root, 'dist/lib/knit_netlink.node'));
else console.error('esbuild.config: build/Release/knit_netlink.node missing; run npm install');
console.error(`built ${names.length} executables into dist/bin: ${names.join(' ')}`);
