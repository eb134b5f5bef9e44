import type { Command } from 'commander';

/** `drover gpus`: the WebGPU adapters, numbered as --gpu and --gpus count them. */
export function addGpusCommand(program: Command): Command {
  return program
    .command('gpus')
    .description('list the WebGPU adapters (Dawn) this machine offers, in the order --gpu and --gpus count')
    .option('--json', 'print JSON instead of text')
    .action(listGpus);
}

async function listGpus(flags: { json?: boolean }): Promise<void> {
  const { listGpuAdapters } = await import('../model/webgpu.ts');
  const adapters = await listGpuAdapters();
  if (flags.json) process.stdout.write(`${JSON.stringify(adapters)}\n`);
  else if (adapters.length === 0) process.stdout.write('no WebGPU adapter (no Vulkan driver sees a device; see README: GPU hosts)\n');
  else for (const a of adapters) process.stdout.write(`${a.index}: ${a.name} (${a.backend}${a.software ? ', software: not a GPU' : ''})\n`);
}
