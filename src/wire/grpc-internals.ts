import { createRequire } from 'node:module';
import { GrpcInternalsError } from '../errors.ts';

/**
 * drover reaches into grpc-js internals in three places, for speed: the server call's message
 * framing (framed-serialize.ts), the server's HTTP/2 settings (flow-control.ts) and the client's
 * message framing for peer chunks (src/peer/framed-push.ts). No semver promise covers
 * internals, so all were tested against one version and package.json pins its
 * minor (`~1.14.7`). Before touching an internal each patch calls `checkGrpcJsVersion`, which
 * refuses any other version loudly: a silent fallback would leave a cluster slower (or broken)
 * with nothing in the log to say why. To move to a new grpc-js: bump the pin, re-run
 * test/wire-grpc-internals.test.ts and test/peer-framing.test.ts (they observe the patches), update this.
 */
export const TESTED_GRPC_JS_VERSION = '1.14.7';

const require = createRequire(import.meta.url);

/** The version of the grpc-js this process loads. */
export function installedGrpcJsVersion(): string {
  return (require('@grpc/grpc-js/package.json') as { version: string }).version;
}

/** Whether `version` is in the pinned range `~TESTED_GRPC_JS_VERSION`: same major and minor, patch no older. */
export function isTestedGrpcJs(version: string): boolean {
  const seen = parseVersion(version);
  const tested = parseVersion(TESTED_GRPC_JS_VERSION)!;
  return seen !== undefined && seen[0] === tested[0] && seen[1] === tested[1] && seen[2] >= tested[2];
}

/** Throws GrpcInternalsError unless grpc-js `version` (default: the installed one) is in the tested range. */
export function checkGrpcJsVersion(internal: string, version = installedGrpcJsVersion()): void {
  if (isTestedGrpcJs(version)) return;
  throw new GrpcInternalsError(
    `grpc-js ${version} is installed, but drover's patch of its ${internal} was tested with grpc-js ${TESTED_GRPC_JS_VERSION} ` +
      `(package.json pins ~${TESTED_GRPC_JS_VERSION}): install that version (npm ci), or re-test the patch on ${version} ` +
      `and update TESTED_GRPC_JS_VERSION (src/wire/grpc-internals.ts)`,
    version,
    TESTED_GRPC_JS_VERSION,
  );
}

/** The error for a tested version whose internal is nonetheless not where the patch expects it. */
export function missingInternal(internal: string, version = installedGrpcJsVersion()): GrpcInternalsError {
  return new GrpcInternalsError(
    `grpc-js ${version} lacks the internal drover patches (${internal}), though drover was tested with grpc-js ${TESTED_GRPC_JS_VERSION}: ` +
      'is a second, other copy of grpc-js installed?',
    version,
    TESTED_GRPC_JS_VERSION,
  );
}

function parseVersion(version: string): [number, number, number] | undefined {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : undefined;
}
