/**
 * Writes that must not be cut in half by a second Ctrl-C: a checkpoint, the exported model.
 * Each file is already written to a temporary name and renamed, but a model is two files
 * (weights.bin, then model.json): an exit between them would pair new weights with an old
 * topology. So an impatient exit waits for the writes in flight, and no new one starts.
 */
const inFlight = new Set<Promise<unknown>>();
let exiting = false;

/** Runs `write` unless the process is exiting; an exit requested meanwhile waits for it. */
export async function guardWrite<T>(write: () => Promise<T>): Promise<T> {
  // The process is about to exit: start nothing that could be cut off.
  if (exiting) return new Promise<T>(() => {});
  const running = write();
  inFlight.add(running);
  try {
    return await running;
  } finally {
    inFlight.delete(running);
  }
}

/** True while a guarded write runs. */
export function writesInFlight(): boolean {
  return inFlight.size > 0;
}

/** Exits with `code` now, or as soon as the guarded writes in flight are done. */
export function exitAfterWrites(code: number): void {
  exiting = true;
  if (inFlight.size === 0) process.exit(code);
  void Promise.allSettled([...inFlight]).then(() => process.exit(code));
}
