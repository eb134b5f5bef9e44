// `npm run test:container`: builds the real image and trains a job with it (podman). Kept apart
// from `npm test`, which must pass on machines without podman or network access to Debian's archive.
export default {
  files: ['test/container/**/*.test.ts'],
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  timeout: '40m',
  concurrency: 1,
  workerThreads: false,
};
