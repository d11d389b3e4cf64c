// Mocha reporter for runs inside the kernel lane: mocha's spec output for people, plus one
// machine-readable line per event for test/integration/kernel-lane.test.ts:
//   ##knit-lane {"event":"begin"|"pass"|"fail"|"pending"|"suite"|"end", ...}
// Plain CommonJS so it loads without tsx. Use: mocha --reporter scripts/kernel/mocha-reporter.js
'use strict';
const Mocha = require('mocha');

const { Spec } = Mocha.reporters;
const C = Mocha.Runner.constants;
const MARK = '##knit-lane ';

class KnitLaneReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    const emit = (o) => process.stdout.write(`${MARK}${JSON.stringify(o)}\n`);
    const started = new Map();
    // Process start to the first test: node, mocha, tsx and loading the test files.
    runner.once(C.EVENT_RUN_BEGIN, () => emit({ event: 'begin', ms: Math.round(process.uptime() * 1000) }));
    runner.on(C.EVENT_SUITE_BEGIN, (s) => { started.set(s, Date.now()); });
    runner.on(C.EVENT_SUITE_END, (s) => {
      if (s.root || !s.parent || !s.parent.root) return; // top-level suites only
      emit({ event: 'suite', title: s.fullTitle(), file: s.file, ms: Date.now() - (started.get(s) ?? Date.now()) });
    });
    runner.on(C.EVENT_TEST_PASS, (t) => emit({ event: 'pass', title: t.fullTitle(), file: t.file, ms: t.duration }));
    runner.on(C.EVENT_TEST_PENDING, (t) => emit({ event: 'pending', title: t.fullTitle(), file: t.file }));
    runner.on(C.EVENT_TEST_FAIL, (t, err) => emit({
      event: 'fail', title: t.fullTitle(), file: t.file, ms: t.duration,
      message: String(err && err.message), stack: String((err && err.stack) || err),
    }));
    runner.once(C.EVENT_RUN_END, () => emit({ event: 'end', stats: runner.stats }));
  }
}

module.exports = KnitLaneReporter;
