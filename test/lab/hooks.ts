// Mocha root hooks: whatever a suite forgot, the run removes its lab namespaces at the end.
import { listLabNetns, removeAllSync, RUN_PREFIX } from './lab';

export const mochaHooks = {
  afterAll(): void {
    removeAllSync();
    if (process.getuid?.() === 0) {
      const left = listLabNetns(RUN_PREFIX);
      if (left.length) console.error(`lab: namespaces left behind by this run: ${left.join(' ')}`);
    }
  },
};
