// The kill -9 suite inside `npm test` (issue 14 item 2; long runs: `npm run chaos`): a short
// seeded run over every plugin x IPAM x (exec'd, knitd) combination, and the regressions the
// suite found, each killed at the exact step: a macvlan killed between its creation under a
// temporary name and its rename in the pod, and a knit-host-local ADD killed between its
// reservation and its index (exec'd and under knitd). Each shows the kill left something, then
// that DEL exits 0 and removes it, the re-ADD succeeds and the final DEL leaves nothing.
import assert from 'node:assert/strict';
import { requireRoot } from '../lab/lab';
import { requireEtcd } from '../lab/etcd';
import { Chaos, formatReport, runChaos, type Mode, type RunResult } from '../lab/chaos';

const SEED = 1414;

describe('kill -9 suite', function () {
  this.timeout(240_000);

  let chaos: Chaos;
  before(async function () {
    requireRoot(this);
    requireEtcd(this);
    chaos = new Chaos();
    await chaos.setup();
  });
  after(async () => { await chaos?.teardown(); });

  describe('regressions, killed at the step that left something DEL did not find', () => {
    const killAt = (key: string, mode: Mode, step: string): Promise<RunResult> =>
      chaos.run(chaos.net(key), mode, { verb: 'ADD', step, delay: 0, target: mode === 'knitd' ? 'knitd' : 'plugin', tag: step });

    for (const [key, mode] of [['macvlan/host-local', 'exec'], ['macvlan/etcd', 'knitd']] as const) {
      it(`${key} ${mode}: killed between creating the macvlan (temporary name) and renaming it, DEL finds and removes it`, async () => {
        const r = await killAt(key, mode, 'rename');
        assert.ok(r.killed, `${r.what}: the process was not killed`);
        assert.ok(r.leftByKill.some((d) => d.startsWith('residue: pod') && /"kmv[0-9a-f]{12} macvlan/.test(d)),
          `the kill should leave the temporarily named macvlan in the pod: ${r.leftByKill.join('; ')}`);
        assert.deepEqual(r.problems, [], r.what);
      });
    }

    for (const [key, mode] of [['bridge/host-local', 'exec'], ['bridge/host-local', 'knitd'], ['macvlan/host-local', 'exec'], ['overlay/host-local', 'knitd']] as const) {
      it(`${key} ${mode}: killed between the reservation and its index, DEL frees the address`, async () => {
        const r = await killAt(key, mode, 'reserved');
        assert.ok(r.killed, `${r.what}: the process was not killed`);
        assert.ok(r.leftByKill.some((d) => d.startsWith('orphans: host-local files') && /ips\/[0-9.]+ ch/.test(d)),
          `the kill should leave a reservation: ${r.leftByKill.join('; ')}`);
        assert.ok(!r.leftByKill.some((d) => /attachments\//.test(d)), `and no index: ${r.leftByKill.join('; ')}`);
        assert.deepEqual(r.problems, [], r.what);
      });
    }
  });

  it(`a seeded run (seed ${SEED}) over every combination: 0 residue, 0 duplicates, 0 orphans`, async () => {
    const report = await runChaos({ runs: 12, seed: SEED }, chaos);
    console.log(formatReport(report).split('\n').map((l) => `      ${l}`).join('\n'));
    assert.equal(report.runs, 12);
    assert.equal(report.combos.size, 12, 'every plugin x IPAM x mode');
    assert.equal(report.unexpected, 0, '"unexpected failure" answers');
    assert.deepEqual(report.failures, []);
    assert.equal(report.failed, 0);
    let kills = 0;
    for (const s of report.combos.values()) kills += s.kills;
    assert.ok(kills >= 6, `at least half of the runs killed a process (${kills} of 12)`);
  });
});
