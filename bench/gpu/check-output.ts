/**
 * Checks the shape of `bench:gpu -- --json` output (or a bundle's bench.jsonl): every line a JSON
 * object with system, model, batch and a positive img_per_s, and one line for each expected
 * system and setting. Exits 1 listing what is wrong. Figures are not judged.
 *
 *   npm run bench:gpu -- --json --steps 1 --warmup 1 --transfer-steps 1 --cnn-batches 8 --transfer-batch 2 --size 96 \
 *     | node --import tsx bench/gpu/check-output.ts --systems webgpu --cnn-batches 8 --transfer-batch 2
 *   node --import tsx bench/gpu/check-output.ts out/bench.jsonl --systems pytorch-cpu,webgpu ...
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { MODELS } from './jobs.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    systems: { type: 'string', default: 'webgpu' },
    'cnn-batches': { type: 'string', default: '64,256,1024' },
    'transfer-batch': { type: 'string', default: '32' },
  },
});

const text = positionals[0] ? await readFile(positionals[0], 'utf8') : await readStdin();
const problems: string[] = [];
const seen = new Set<string>();
const lines = text.split('\n').filter((l) => l.trim().length > 0);
lines.forEach((raw, i) => {
  let line: Record<string, unknown>;
  try {
    line = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    problems.push(`line ${i + 1} is not JSON: ${raw.slice(0, 120)}`);
    return;
  }
  const where = `line ${i + 1} (${String(line.system)} ${String(line.model)} ${String(line.batch)})`;
  if (typeof line.system !== 'string' || line.system.length === 0) problems.push(`${where}: no system`);
  if (!(MODELS as readonly unknown[]).includes(line.model)) problems.push(`${where}: model is not one of ${MODELS.join(', ')}`);
  if (!Number.isInteger(line.batch) || (line.batch as number) < 1) problems.push(`${where}: batch is not a positive integer`);
  if (typeof line.img_per_s !== 'number' || !(line.img_per_s > 0)) problems.push(`${where}: img_per_s ${String(line.img_per_s)}${line.note ? ` (${String(line.note)})` : ''}`);
  seen.add(`${String(line.system)}/${String(line.model)}/${String(line.batch)}`);
});
const transferBatch = Number(values['transfer-batch']);
for (const system of values.systems.split(',')) {
  const expected = [...values['cnn-batches'].split(',').map((b) => `fmnist-cnn/${Number(b)}`), `mobilenetv2-frozen/${transferBatch}`, `mobilenetv2-finetune/${transferBatch}`];
  if (system === 'webgpu') expected.push(`gpu-augment/${transferBatch}`);
  if (system === 'webgpu-trainer') expected.splice(0, expected.length, `fmnist-cnn/${Number(values['cnn-batches'].split(',')[0])}`, `mobilenetv2-frozen/${transferBatch}`);
  for (const setting of expected) if (!seen.has(`${system}/${setting}`)) problems.push(`missing: ${system} ${setting.replace('/', ' batch ')}`);
}
if (problems.length > 0) {
  console.error(`bench:gpu output: ${problems.length} problem(s)\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`bench:gpu output: ${lines.length} lines, shape ok`);

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
