// Original file: proto/drover.proto


/**
 * What a worker brings.
 */
export interface Capabilities {
  /**
   * tfjs backend name: "tensorflow", "wasm", "cpu" (or "simulated" for benchmarks).
   */
  'backend'?: (string);
  /**
   * Human description of the device ("wasm (simd, 1 thread)", "CUDA GPU 0").
   */
  'device'?: (string);
  /**
   * Threads of its decode pool.
   */
  'threads'?: (number);
  'hostname'?: (string);
  'pid'?: (number);
}

/**
 * What a worker brings.
 */
export interface Capabilities__Output {
  /**
   * tfjs backend name: "tensorflow", "wasm", "cpu" (or "simulated" for benchmarks).
   */
  'backend': (string);
  /**
   * Human description of the device ("wasm (simd, 1 thread)", "CUDA GPU 0").
   */
  'device': (string);
  /**
   * Threads of its decode pool.
   */
  'threads': (number);
  'hostname': (string);
  'pid': (number);
}
