// VERSION latency: what every plugin of every conflist pays before each podman command.
// knit-host-local as the esbuild bundle (dist/bin) and as the release single executable
// (dist/release, when built) beside the reference host-local and bridge, plus `node -e 0`
// as the floor any Node-based plugin starts from.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchCase, CommandSpec, Suite, SuiteOptions } from '../types';

const REFERENCE_DIR = '/usr/lib/cni';
const STDIN = '{"cniVersion":"1.0.0"}';
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

function version(file: string, env: Record<string, string> = {}): CommandSpec {
  return { file, env: { CNI_COMMAND: 'VERSION', ...env }, stdin: STDIN };
}

async function setup(opts: SuiteOptions): Promise<{ cases: BenchCase[]; notes: string[] }> {
  const notes: string[] = [];
  const hostLocal = version(join(REFERENCE_DIR, 'host-local'));
  const bridge = version(join(REFERENCE_DIR, 'bridge'));
  const cases: BenchCase[] = [{
    name: 'floor: node -e 0 vs bridge VERSION',
    knit: { file: process.execPath, args: ['-e', '0'] },
    knitLabel: `node ${process.version} -e 0`,
    reference: bridge,
    referenceLabel: 'bridge',
  }];
  const variants: Array<[string, string]> = [
    ['bundle', join(opts.root, 'dist/bin/knit-host-local')],
    ['release', join(opts.root, 'dist/release/knit-host-local')],
  ];
  for (const [kind, file] of variants) {
    if (!existsSync(file)) {
      notes.push(`${kind} skipped: ${file} not built (npm run ${kind === 'bundle' ? 'build' : 'build:release'})`);
      continue;
    }
    for (const [refName, ref] of [['host-local', hostLocal], ['bridge', bridge]] as const) {
      cases.push({
        name: `VERSION: knit-host-local ${kind} vs ${refName}`,
        knit: version(file),
        knitLabel: `knit-host-local (${kind})`,
        reference: ref,
        referenceLabel: refName,
      });
    }
    if (kind === 'release' && existsSync(CA_BUNDLE)) {
      // A wrapper cannot unset it in front of a single executable: measure what it costs.
      cases.push({
        name: 'VERSION: release with NODE_EXTRA_CA_CERTS set vs host-local',
        knit: version(file, { NODE_EXTRA_CA_CERTS: CA_BUNDLE }),
        knitLabel: 'knit-host-local (release, CA env)',
        reference: hostLocal,
        referenceLabel: 'host-local',
      });
    }
  }
  return { cases, notes };
}

export const suite: Suite = {
  name: 'version',
  description: 'CNI VERSION latency, knit vs reference plugins',
  setup,
};
