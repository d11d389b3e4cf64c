// VERSION latency: what every plugin of every conflist pays before each podman command.
// knit-host-local as the esbuild bundle (dist/bin) and as the release (dist/release, when
// built: its sh launcher, and the single executable itself as `knit knit-host-local`, which
// is what every other command pays to start) beside the reference host-local and bridge,
// plus `node -e 0` as the floor any Node-based plugin starts from.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchCase, CommandSpec, Suite, SuiteOptions } from '../types';

const REFERENCE_DIR = '/usr/lib/cni';
const STDIN = '{"cniVersion":"1.0.0"}';
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

function version(file: string, env: Record<string, string> = {}, args: string[] = []): CommandSpec {
  return { file, args, env: { CNI_COMMAND: 'VERSION', ...env }, stdin: STDIN };
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
  const sea = join(opts.root, 'dist/release/knit');
  const variants: Array<[string, CommandSpec, string]> = [
    ['bundle', version(join(opts.root, 'dist/bin/knit-host-local')), 'build'],
    ['release launcher', version(join(opts.root, 'dist/release/knit-host-local')), 'build:release'],
    ['release single executable', version(sea, {}, ['knit-host-local']), 'build:release'],
  ];
  for (const [kind, spec, script] of variants) {
    if (!existsSync(spec.file)) {
      notes.push(`${kind} skipped: ${spec.file} not built (npm run ${script})`);
      continue;
    }
    for (const [refName, ref] of [['host-local', hostLocal], ['bridge', bridge]] as const) {
      cases.push({
        name: `VERSION: knit-host-local ${kind} vs ${refName}`,
        knit: spec,
        knitLabel: `knit-host-local (${kind})`,
        reference: ref,
        referenceLabel: refName,
      });
    }
  }
  if (existsSync(sea) && existsSync(CA_BUNDLE)) {
    // Nothing can unset it in front of the single executable itself: measure what it costs.
    cases.push({
      name: 'VERSION: release single executable, NODE_EXTRA_CA_CERTS set, vs host-local',
      knit: version(sea, { NODE_EXTRA_CA_CERTS: CA_BUNDLE }, ['knit-host-local']),
      knitLabel: 'knit-host-local (SEA, CA env)',
      reference: hostLocal,
      referenceLabel: 'host-local',
    });
  }
  return { cases, notes };
}

export const suite: Suite = {
  name: 'version',
  description: 'CNI VERSION latency, knit vs reference plugins',
  setup,
};
