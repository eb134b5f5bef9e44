/**
 * Regenerates src/peer/generated/ from proto/peer.proto
 * (`npm run proto:types` runs it after drover.proto's) with drover.proto's generator
 * (src/wire/generate-types.ts): the same flags and `.ts` import fix-up, so both contracts load alike.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateTypes } from '../wire/generate-types.ts';
import { PEER_PROTO_FILE } from './protocol.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(here, 'generated');
const root = path.resolve(here, '../..');

/** Generates the peer message types into `dir` (default: src/peer/generated), replacing what was there. */
export function generatePeerTypes(dir = outDir): Promise<string[]> {
  return generateTypes(dir, PEER_PROTO_FILE);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = await generatePeerTypes();
  process.stdout.write(`peer proto types: ${files.length} files in ${path.relative(root, outDir)}\n`);
}
