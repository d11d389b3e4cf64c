// A macvlan ADD killed between writing its parent record's temp file and renaming it leaves
// `<record>.tmp<pid>`; DEL (which finds no record) removes it once that process is gone, never a
// live writer's (chaos suite, seed 1414, run 5).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ParentRefs, recordName } from '../../pkg/iface/parent-refs';

describe('macvlan parent records: temp files of killed writers', () => {
  it('removeStray removes a dead writer\'s temp file of this attachment only, and keeps a live one', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-refs-'));
    try {
      const refs = new ParentRefs(base, 'ns1', 'eth0');
      const attDir = path.join(base, 'ns1', 'eth0', 'att');
      const id = { network: 'n', containerId: 'c1', ifName: 'eth0' };
      const other = { network: 'n', containerId: 'c2', ifName: 'eth0' };
      const dead = spawnSync('true').pid!;
      fs.mkdirSync(attDir, { recursive: true });
      const f = (r: typeof id, pid: number): string => path.join(attDir, `${recordName(r)}.tmp${pid}`);
      for (const file of [f(id, dead), f(id, process.pid), f(other, dead)]) fs.writeFileSync(file, '{}');
      assert.equal(refs.removeStray(id), 1);
      assert.deepEqual(fs.readdirSync(attDir).sort(), [path.basename(f(id, process.pid)), path.basename(f(other, dead))].sort());
      assert.deepEqual(refs.list(), [], 'temp files are never records');
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
