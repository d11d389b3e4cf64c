// Builds the libcni driver (test/e2e/libcni) once per source version, in GOPATH mode against
// Debian's golang-github-appc-cni-dev, and returns its path.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../lab/lab';

const SRC = join(__dirname, 'libcni');
export const LIBCNI_SRC = '/usr/share/gocode/src/github.com/containernetworking/cni/libcni';

export async function buildCnitool(): Promise<string> {
  const hash = createHash('sha256').update(readFileSync(join(SRC, 'knit-cnitool.go'))).digest('hex').slice(0, 12);
  const dir = join(tmpdir(), `knit-cnitool-${hash}`);
  const bin = join(dir, 'knit-cnitool');
  if (existsSync(bin)) return bin;
  mkdirSync(join(dir, 'gopath'), { recursive: true });
  await run('sh', ['-c', `cd "${SRC}" && go build -o "${bin}" .`], {
    env: { GO111MODULE: 'off', GOPATH: `${join(dir, 'gopath')}:/usr/share/gocode`, GOCACHE: join(dir, 'gocache'), GOFLAGS: '' },
    timeoutMs: 300_000,
  }).catch((e: Error) => { throw new Error(`building the libcni driver failed: ${e.message}`); });
  return bin;
}
