import { execFileSync } from 'node:child_process';
import path from 'node:path';

/**
 * A self-signed certificate for localhost / 127.0.0.1 written into `dir` (cert.pem, key.pem),
 * or undefined where openssl is not installed (the caller then says so and skips).
 */
export function selfSignedCertificate(dir: string): { cert: string; key: string } | undefined {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  return { cert, key };
}
