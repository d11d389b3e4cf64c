// Undo steps for a multi-step ADD: each step that changes the node registers its inverse;
// on failure they run newest first, so a failed ADD leaves nothing behind.
import type { Env } from '../cni/env';
import type { Logger } from '../cni/log';

export class Rollback {
  private readonly steps: Array<{ what: string; undo: () => void | Promise<void> }> = [];

  add(what: string, undo: () => void | Promise<void>): void {
    this.steps.push({ what, undo });
  }

  /** Runs every undo step (newest first); a failing step is logged and the rest still run. */
  async run(log: Logger): Promise<void> {
    for (const s of this.steps.splice(0).reverse()) {
      try {
        await s.undo();
      } catch (e) {
        log.warn(`rollback: undoing "${s.what}" failed: ${(e as Error).message}`);
      }
    }
  }
}

/**
 * Test hook: KNIT_FAILPOINT=<name> makes the named step fail, so tests can prove that a failure
 * at every step of ADD leaves nothing behind (the reference has debugPostIPAMError for one step).
 * KNIT_FAILPOINT=<name>! instead kills whoever runs the plugin (the exec'd process or knitd) at
 * that step, as a crash would. Read from the request's environment, never process.env: knitd
 * serves many requests with one process environment.
 */
export function failpoint(env: Env, name: string): void {
  const fp = env.KNIT_FAILPOINT;
  if (!fp || !fp.startsWith(name)) return;
  if (fp === name) throw new Error(`failpoint "${name}" reached (KNIT_FAILPOINT)`);
  if (fp === `${name}!`) process.kill(process.pid, 'SIGKILL');
}
