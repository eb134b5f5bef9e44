/**
 * Kernels the wasm backend lacks for training (or has only in a slow form), composed from
 * its fast kernels. Registered once, before the backend is activated.
 */
let registered = false;

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
}
