/**
 * Regenerates src/wire/generated/ from proto/drover.proto (`npm run proto:types`).
 * The generator's flags come from LOAD_OPTIONS, so the types match what loadSync produces;
 * relative imports get the `.ts` extension this ESM project requires.
 */
import { execFileSync } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOAD_OPTIONS, PROTO_FILE } from './protocol.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(here, 'generated');
const root = path.resolve(here, '../..');

/** The proto-loader-gen-types flags equivalent to LOAD_OPTIONS. */
export function generatorFlags(): string[] {
  const flags: string[] = [];
  if (LOAD_OPTIONS.keepCase) flags.push('--keepCase');
  flags.push(`--longs=${LOAD_OPTIONS.longs.name}`);
  flags.push(`--enums=${LOAD_OPTIONS.enums.name}`);
  if (LOAD_OPTIONS.defaults) flags.push('--defaults');
  if (LOAD_OPTIONS.oneofs) flags.push('--oneofs');
  return [...flags, '--includeComments', '--grpcLib=@grpc/grpc-js'];
}

/** Adds `.ts` to the relative imports of one generated file. */
export function addTsExtensions(source: string): string {
  return source.replace(/from '(\.{1,2}\/[^']+?)'/g, (_match, spec: string) => `from '${spec.endsWith('.ts') ? spec : `${spec}.ts`}'`);
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(entries.map((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name)) : [path.join(dir, e.name)])));
  return nested.flat();
}

/**
 * Generates the message types of `protoFile` (default proto/drover.proto) into `dir` (default:
 * src/wire/generated), replacing what was there. The peer contract uses it too.
 */
export async function generateTypes(dir = outDir, protoFile = PROTO_FILE): Promise<string[]> {
  const require = createRequire(import.meta.url);
  const bin = path.join(path.dirname(require.resolve('@grpc/proto-loader/package.json')), 'build/bin/proto-loader-gen-types.js');
  await rm(dir, { recursive: true, force: true });
  execFileSync(process.execPath, [bin, ...generatorFlags(), '-O', dir, path.relative(root, protoFile)], { cwd: root, stdio: 'pipe' });
  const files = await listFiles(dir);
  for (const file of files) {
    await writeFile(file, addTsExtensions(await readFile(file, 'utf8')));
  }
  return files.map((f) => path.relative(dir, f)).sort();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = await generateTypes();
  process.stdout.write(`proto:types: ${files.length} files in ${path.relative(root, outDir)}\n`);
}
