import { ConfigError } from '../errors.ts';

/** Where a worker found its coordinator's address. */
export type CoordinatorAddressSource = '--coordinator' | 'DROVER_COORDINATOR' | 'MASTER_ADDR/MASTER_PORT' | 'PET_MASTER_ADDR/PET_MASTER_PORT';

export interface CoordinatorAddress {
  /** host:port to dial. */
  address: string;
  source: CoordinatorAddressSource;
}

/**
 * The coordinator's address: the flag, else DROVER_COORDINATOR (host:port), else MASTER_ADDR and
 * MASTER_PORT (what Kubeflow's PyTorchJob injects), else PET_MASTER_ADDR and PET_MASTER_PORT
 * (torchrun's names, which TrainJob sets). A half-set pair or a malformed value is an error that
 * names the variable, not a fall-through to the next source: the operator meant that one.
 */
export function resolveCoordinatorAddress(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): CoordinatorAddress {
  if (flag !== undefined) return { address: hostPort(flag, '--coordinator'), source: '--coordinator' };
  const drover = env.DROVER_COORDINATOR;
  if (drover !== undefined && drover !== '') return { address: hostPort(drover, 'DROVER_COORDINATOR'), source: 'DROVER_COORDINATOR' };
  for (const prefix of ['', 'PET_'] as const) {
    const host = env[`${prefix}MASTER_ADDR`];
    const port = env[`${prefix}MASTER_PORT`];
    if ((host === undefined || host === '') && (port === undefined || port === '')) continue;
    const source = `${prefix}MASTER_ADDR/${prefix}MASTER_PORT` as CoordinatorAddressSource;
    if (host === undefined || host === '') throw new ConfigError(`${prefix}MASTER_PORT is set but ${prefix}MASTER_ADDR is not: set both, or DROVER_COORDINATOR=host:port`, `${prefix}MASTER_ADDR`);
    if (port === undefined || port === '') throw new ConfigError(`${prefix}MASTER_ADDR is set but ${prefix}MASTER_PORT is not: set both, or DROVER_COORDINATOR=host:port`, `${prefix}MASTER_PORT`);
    checkPort(port, `${prefix}MASTER_PORT`);
    // An IPv6 literal needs brackets in a gRPC target.
    return { address: host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`, source };
  }
  throw new ConfigError(
    'no coordinator address: pass --coordinator host:port, or set DROVER_COORDINATOR=host:port, MASTER_ADDR + MASTER_PORT, or PET_MASTER_ADDR + PET_MASTER_PORT',
    'coordinator',
  );
}

/** Checks a host:port value ([v6]:port too) and returns it unchanged. */
function hostPort(value: string, where: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):([^:]*)$/.exec(value);
  if (!match) throw new ConfigError(`${where} must be host:port, got ${JSON.stringify(value)}`, where);
  checkPort(match[2]!, where);
  return value;
}

function checkPort(port: string, where: string): void {
  const n = Number(port);
  if (!/^\d+$/.test(port) || n < 1 || n > 65535) throw new ConfigError(`${where}: port must be 1-65535, got ${JSON.stringify(port)}`, where);
}
