import { constants as osConstants } from 'node:os';
import { exitAfterWrites, writesInFlight } from '../io/write-guard.ts';
import type { Logger } from '../telemetry/logger.ts';

export type StopSignal = 'SIGINT' | 'SIGTERM';

/**
 * The exit code of a command a signal stopped: 128 + the signal's number, as a shell reports an
 * unhandled one (130 for Ctrl-C, 143 for SIGTERM). A Kubernetes Job counts such a pod failed
 * and starts another, which resumes; 0 would end the Job as succeeded.
 */
export function signalExitCode(name: StopSignal): number {
  return 128 + osConstants.signals[name];
}

/**
 * Aborts on the first Ctrl-C or SIGTERM (finish the step, checkpoint, dismiss workers), exits
 * on the second: at once, or when the checkpoint or model being written is complete.
 */
export function interruptSignal(log: Logger, onSignal?: (name: StopSignal) => void): AbortSignal {
  const controller = new AbortController();
  for (const name of ['SIGINT', 'SIGTERM'] as const) {
    process.on(name, () => {
      if (controller.signal.aborted) {
        if (writesInFlight()) log.warn({ signal: name }, 'finishing the checkpoint or model being written, then exiting');
        exitAfterWrites(signalExitCode(name));
        return;
      }
      onSignal?.(name);
      log.warn({ signal: name }, 'interrupted: stopping after the current step (Ctrl-C again to quit now)');
      controller.abort();
    });
  }
  return controller.signal;
}
