import { readFileSync } from 'node:fs';
import { ChannelCredentials, ServerCredentials } from '@grpc/grpc-js';
import { ConfigError } from '../errors.ts';

/** Certificate files of a TLS server (PEM). `ca`, when given, is not used to verify clients. */
export interface ServerTlsFiles {
  cert: string;
  key: string;
}

/** What a client needs to trust the server: a CA file (for self-signed certificates), or the system roots. */
export interface ClientTlsFiles {
  ca?: string;
}

function readPem(file: string, field: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new ConfigError(`cannot read ${field} ${file}: ${(cause as Error).message}`, field, { cause });
  }
}

/** TLS server credentials when certificate paths are given, else plaintext. */
export function serverCredentials(tls: ServerTlsFiles | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const cert = readPem(tls.cert, 'cluster.tls.cert');
  const key = readPem(tls.key, 'cluster.tls.key');
  return ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }], false);
}

/** TLS channel credentials (trusting `ca`, or the system roots) when asked for, else plaintext. */
export function channelCredentials(tls: ClientTlsFiles | undefined): ChannelCredentials {
  if (!tls) return ChannelCredentials.createInsecure();
  return ChannelCredentials.createSsl(tls.ca ? readPem(tls.ca, 'tls.ca') : null);
}
