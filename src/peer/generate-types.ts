/**
 * Regenerates src/peer/generated/ from proto/peer.proto
 * (`node --import tsx src/peer/generate-types.ts`). Same generator flags and `.ts` import fix-up
 * as drover.proto's types (src/wire/generate-types.ts), so both contracts load alike.
 */
import { execFileSync } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addTsExtensions, generatorFlags } from '../wire/generate-types.ts';
import { PEER_PROTO_FILE } from './protocol.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(here, 'generated');
const root = path.resolve(here, '../..');

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(entries.map((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name)) : [path.join(dir, e.name)])));
  return nested.flat();
}

/** Generates the peer message types into `dir` (default: src/peer/generated), replacing what was there. */
export async function generatePeerTypes(dir = outDir): Promise<string[]> {
  const require = createRequire(import.meta.url);
  const bin = path.join(path.dirname(require.resolve('@grpc/proto-loader/package.json')), 'build/bin/proto-loader-gen-types.js');
  await rm(dir, { recursive: true, force: true });
  execFileSync(process.execPath, [bin, ...generatorFlags(), '-O', dir, path.relative(root, PEER_PROTO_FILE)], { cwd: root, stdio: 'pipe' });
  const files = await listFiles(dir);
  for (const file of files) await writeFile(file, addTsExtensions(await readFile(file, 'utf8')));
  return files.map((f) => path.relative(dir, f)).sort();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = await generatePeerTypes();
  process.stdout.write(`peer proto types: ${files.length} files in ${path.relative(root, outDir)}\n`);
}
