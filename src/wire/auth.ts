import { createHash, timingSafeEqual } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';
import { AuthError } from '../errors.ts';

/** Workers present the job's shared secret as `authorization: Bearer <token>` on every call. */
export const AUTH_METADATA_KEY = 'authorization';

/** Call metadata carrying a token (empty metadata when there is none). */
export function tokenMetadata(token: string | undefined): Metadata {
  const metadata = new Metadata();
  if (token) metadata.set(AUTH_METADATA_KEY, `Bearer ${token}`);
  return metadata;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * Checks the token in a call's metadata. Compared in constant time (on digests, so lengths do
 * not leak either). No expected token means the coordinator runs open.
 */
export function checkToken(metadata: Metadata, expected: string | undefined): void {
  if (expected === undefined) return;
  const value = metadata.get(AUTH_METADATA_KEY)[0];
  if (typeof value !== 'string' || value.length === 0) {
    throw new AuthError('no token presented: start the worker with --token (or DROVER_TOKEN) set to the job\'s cluster.token');
  }
  const presented = value.startsWith('Bearer ') ? value.slice('Bearer '.length) : value;
  if (!timingSafeEqual(digest(presented), digest(expected))) {
    throw new AuthError('wrong token: the worker\'s --token does not match the job\'s cluster.token');
  }
}
