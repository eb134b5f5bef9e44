import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { parseJob } from '../../src/job/job-file.ts';
import { HEALTH_SERVICE, LIVENESS_SERVICE } from '../../src/coordinator/server.ts';

/** A rendered Kubernetes object, as plain data. */
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; [key: string]: unknown };

const run = promisify(execFile);

/**
 * Renders a kustomization: `kubectl kustomize` where kubectl is installed, else (with `reason`
 * set) the resource files it lists, untransformed, so that validation still runs everywhere.
 */
export async function renderKustomization(dir: string): Promise<{ objects: K8sObject[]; renderer: 'kubectl' | 'files'; reason?: string }> {
  try {
    const { stdout } = await run('kubectl', ['kustomize', dir], { maxBuffer: 16 * 1024 * 1024 });
    return { objects: parseYamlStream(stdout), renderer: 'kubectl' };
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code !== 'ENOENT') throw new Error(`kubectl kustomize ${dir} failed: ${e.stderr ?? e.message}`);
    return { objects: await readResources(dir), renderer: 'files', reason: 'kubectl is not installed: validating the resource files without kustomize\'s transformations' };
  }
}

function parseYamlStream(text: string): K8sObject[] {
  return parseAllDocuments(text).map((doc) => doc.toJS() as K8sObject).filter((o) => o !== null);
}

/** The objects a kustomization lists (resources, configMapGenerator files), followed recursively, patches of kind `$patch: delete` applied. */
async function readResources(dir: string): Promise<K8sObject[]> {
  const kustomization = parseYaml(await readFile(path.join(dir, 'kustomization.yaml'), 'utf8')) as {
    resources?: string[];
    configMapGenerator?: { name: string; files: string[] }[];
    patches?: { patch: string }[];
  };
  let objects: K8sObject[] = [];
  for (const resource of kustomization.resources ?? []) {
    const target = path.join(dir, resource);
    objects.push(...(resource.endsWith('.yaml') ? parseYamlStream(await readFile(target, 'utf8')) : await readResources(target)));
  }
  for (const generator of kustomization.configMapGenerator ?? []) {
    const data: Record<string, string> = {};
    for (const file of generator.files) data[path.basename(file)] = await readFile(path.join(dir, file), 'utf8');
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: generator.name }, data });
  }
  for (const { patch } of kustomization.patches ?? []) {
    const p = parseYaml(patch) as K8sObject & { $patch?: string };
    if (p.$patch === 'delete') objects = objects.filter((o) => !(o.kind === p.kind && o.metadata.name === p.metadata.name));
  }
  return objects;
}

/**
 * The JobSet fields drover's overlay uses (jobset.x-k8s.io/v1alpha2), checked strictly: no
 * JobSet schema ships with kubernetes-models. Each replicated job's template is a batch/v1
 * Job spec and is validated as one.
 */
const jobSetSchema = z.strictObject({
  apiVersion: z.literal('jobset.x-k8s.io/v1alpha2'),
  kind: z.literal('JobSet'),
  metadata: z.object({ name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/), labels: z.record(z.string(), z.string()).optional() }),
  spec: z.strictObject({
    successPolicy: z.strictObject({ operator: z.enum(['All', 'Any']), targetReplicatedJobs: z.array(z.string()).min(1) }).optional(),
    failurePolicy: z.strictObject({ maxRestarts: z.number().int().nonnegative() }).optional(),
    replicatedJobs: z.array(z.strictObject({
      name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/),
      replicas: z.number().int().positive(),
      template: z.strictObject({ metadata: z.record(z.string(), z.unknown()).optional(), spec: z.record(z.string(), z.unknown()) }),
    })).min(1),
  }),
});

/** Fields newer than kubernetes-models 4.x's schemas (Kubernetes 1.28+), checked here. */
const newerJobFields = z.object({
  backoffLimitPerIndex: z.number().int().nonnegative().optional(),
  maxFailedIndexes: z.number().int().nonnegative().optional(),
}).loose();

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'batch/v1/Job': Job as never,
  'v1/ConfigMap': ConfigMap as never,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim as never,
  'v1/Secret': Secret as never,
  'v1/Service': Service as never,
};

/** Validates each object against its Kubernetes schema (JobSet: the schema above); returns the problems. */
export function schemaProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const validate = (key: string, data: unknown, where: string): void => {
    const Model = MODELS[key];
    if (!Model) {
      problems.push(`${where}: no schema for ${key}`);
      return;
    }
    try {
      new Model(data as never).validate();
    } catch (error) {
      problems.push(`${where}: ${(error as Error).message}`);
    }
  };
  for (const object of objects) {
    const where = `${object.kind}/${object.metadata?.name}`;
    if (object.kind === 'JobSet') {
      const parsed = jobSetSchema.safeParse(object);
      if (!parsed.success) {
        problems.push(`${where}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
        continue;
      }
      for (const replicated of parsed.data.spec.replicatedJobs) {
        validate('batch/v1/Job', { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: replicated.name }, spec: replicated.template.spec }, `${where} replicatedJob ${replicated.name}`);
        const newer = newerJobFields.safeParse(replicated.template.spec);
        if (!newer.success) problems.push(`${where} replicatedJob ${replicated.name}: ${newer.error.issues[0]!.path.join('.')}: ${newer.error.issues[0]!.message}`);
      }
      continue;
    }
    validate(`${object.apiVersion}/${object.kind}`, object, where);
    if (object.kind === 'Job') {
      const newer = newerJobFields.safeParse(object.spec);
      if (!newer.success) problems.push(`${where}: ${newer.error.issues[0]!.path.join('.')}: ${newer.error.issues[0]!.message}`);
    }
  }
  return problems;
}

type Container = {
  name: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  ports?: { name?: string; containerPort: number }[];
  resources?: { limits?: Record<string, string | number> };
  volumeMounts?: { name: string; mountPath: string }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
};
type Probe = { grpc?: { port: number; service?: string } };
type PodTemplate = { metadata?: { labels?: Record<string, string> }; spec: { containers: Container[]; volumes?: { name: string; persistentVolumeClaim?: { claimName: string }; configMap?: { name: string } }[]; subdomain?: string; restartPolicy?: string } };
type JobSpec = {
  completionMode?: string;
  completions?: number;
  parallelism?: number;
  podFailurePolicy?: { rules: { action: string; onPodConditions?: { type: string }[]; onExitCodes?: { operator: string; values: number[] } }[] };
  template: PodTemplate;
};

/** The coordinator's and the workers' job specs, from the two Jobs or from the JobSet. */
export function jobSpecs(objects: K8sObject[]): { coordinator: JobSpec; workers: JobSpec } {
  const jobSet = objects.find((o) => o.kind === 'JobSet') as (K8sObject & { spec: { replicatedJobs: { name: string; template: { spec: JobSpec } }[] } }) | undefined;
  const byName = (name: string, replicated: string): JobSpec => {
    const spec = jobSet
      ? jobSet.spec.replicatedJobs.find((r) => r.name === replicated)?.template.spec
      : (objects.find((o) => o.kind === 'Job' && o.metadata.name === name) as (K8sObject & { spec: JobSpec }) | undefined)?.spec;
    if (!spec) throw new Error(`no ${replicated} job in the rendering`);
    return spec;
  };
  return { coordinator: byName('drover-coordinator', 'coordinator'), workers: byName('drover-workers', 'workers') };
}

const flag = (args: string[] | undefined, name: string): string | undefined => {
  const i = args?.indexOf(name) ?? -1;
  return i >= 0 ? args![i + 1] : undefined;
};

/**
 * What a mistake in the manifests would break, checked across objects: the Secret and key the
 * pods read, the Service and port the workers dial (down to the port the coordinator's job
 * listens on), the volume the coordinator writes its output and checkpoints to, the job file's
 * ConfigMap, the probes, the workers' GPU and retry settings. Returns the problems found.
 */
export function deploymentProblems(objects: K8sObject[], image: { workdir: string }): string[] {
  const problems: string[] = [];
  const find = (kind: string, name: string): K8sObject | undefined => objects.find((o) => o.kind === kind && o.metadata.name === name);
  const { coordinator, workers } = jobSpecs(objects);
  const coordinatorPod = coordinator.template;
  const workerPod = workers.template;
  const main = coordinatorPod.spec.containers[0]!;
  const worker = workerPod.spec.containers[0]!;

  // The token: every secretKeyRef names a Secret that exists and holds that key.
  for (const [who, container] of [['coordinator', main], ['worker', worker]] as const) {
    const ref = container.env?.find((e) => e.name === 'DROVER_TOKEN')?.valueFrom?.secretKeyRef;
    if (!ref) {
      problems.push(`${who}: DROVER_TOKEN does not come from a Secret`);
      continue;
    }
    const secret = find('Secret', ref.name) as (K8sObject & { data?: Record<string, string>; stringData?: Record<string, string> }) | undefined;
    if (!secret) problems.push(`${who}: reads Secret "${ref.name}", which the rendering does not contain`);
    else if (!(ref.key in (secret.stringData ?? {})) && !(ref.key in (secret.data ?? {}))) problems.push(`${who}: Secret "${ref.name}" has no key "${ref.key}"`);
  }

  // The job file: a ConfigMap volume at the folder --config reads, holding a valid drover job.
  const configPath = flag(main.args, '--config');
  const mountOf = (container: Container, mountPath: string) => container.volumeMounts?.find((m) => mountPath === m.mountPath || mountPath.startsWith(`${m.mountPath}/`));
  let jobPort: number | undefined;
  let outputDir: string | undefined;
  if (!configPath) problems.push('coordinator: no --config');
  else {
    const mount = mountOf(main, configPath);
    const volume = coordinatorPod.spec.volumes?.find((v) => v.name === mount?.name);
    const configMap = volume?.configMap ? (find('ConfigMap', volume.configMap.name) as (K8sObject & { data?: Record<string, string> }) | undefined) : undefined;
    const text = configMap?.data?.[path.posix.relative(mount?.mountPath ?? '', configPath)];
    if (text === undefined) problems.push(`coordinator: --config ${configPath} is not a file of a ConfigMap in the rendering`);
    else {
      try {
        const job = parseJob(parseYaml(text), 'the ConfigMap\'s job file');
        jobPort = job.cluster?.port;
        outputDir = path.posix.resolve(image.workdir, job.output.dir ?? path.posix.join('runs', job.name));
      } catch (error) {
        problems.push(`coordinator: the job file does not validate: ${(error as Error).message}`);
      }
    }
  }

  // The port: the job listens on cluster.port (or --port); the container names it grpc; the
  // Service maps a port to it; the workers dial that Service and port.
  const listenPort = Number(flag(main.args, '--port') ?? jobPort ?? 7070);
  const grpcPort = main.ports?.find((p) => p.name === 'grpc');
  if (grpcPort?.containerPort !== listenPort) problems.push(`coordinator: listens on ${listenPort}, its container port "grpc" is ${grpcPort?.containerPort}`);
  const dial = worker.env?.find((e) => e.name === 'DROVER_COORDINATOR')?.value ?? '';
  const [serviceName, servicePort] = dial.split(':');
  const service = find('Service', serviceName ?? '') as (K8sObject & { spec: { selector?: Record<string, string>; ports: { name?: string; port: number; targetPort?: number | string }[] } }) | undefined;
  if (!service) problems.push(`workers: dial DROVER_COORDINATOR=${dial}, no Service "${serviceName}" in the rendering`);
  else {
    const port = service.spec.ports.find((p) => p.port === Number(servicePort));
    const target = port?.targetPort === undefined ? port?.port : typeof port.targetPort === 'number' ? port.targetPort : main.ports?.find((p) => p.name === port.targetPort)?.containerPort;
    if (!port) problems.push(`workers: dial port ${servicePort}, Service "${serviceName}" has no such port`);
    else if (target !== listenPort) problems.push(`workers: Service "${serviceName}" port ${servicePort} leads to ${target}, the coordinator listens on ${listenPort}`);
    if (!selects(service.spec.selector, coordinatorPod.metadata?.labels)) problems.push(`Service "${serviceName}" does not select the coordinator pod`);
  }

  // Health: gRPC probes on the port the coordinator serves.
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe'] as const) {
    if (main[probe]?.grpc?.port !== listenPort) problems.push(`coordinator: ${probe} is not a gRPC probe on port ${listenPort}`);
  }
  // Readiness turns NOT_SERVING for the whole export and test evaluation: a liveness (or
  // startup) probe on it would restart a coordinator that is finishing its job.
  for (const probe of ['startupProbe', 'livenessProbe'] as const) {
    const service = main[probe]?.grpc?.service ?? '';
    if (service !== LIVENESS_SERVICE) problems.push(`coordinator: ${probe} reads health service "${service}", which is NOT_SERVING while the coordinator drains and exports; use "${LIVENESS_SERVICE}"`);
  }
  const readiness = main.readinessProbe?.grpc?.service ?? '';
  if (readiness !== HEALTH_SERVICE && readiness !== '') problems.push(`coordinator: readinessProbe reads health service "${readiness}"; use "${HEALTH_SERVICE}" (SERVING while workers may join)`);

  // The volume: the coordinator's output folder (checkpoints, model) lies on the PVC.
  if (outputDir) {
    const mount = mountOf(main, outputDir);
    const volume = coordinatorPod.spec.volumes?.find((v) => v.name === mount?.name);
    if (!volume?.persistentVolumeClaim) problems.push(`coordinator: writes ${outputDir}, which is not on a PersistentVolumeClaim`);
    else if (!find('PersistentVolumeClaim', volume.persistentVolumeClaim.claimName)) problems.push(`coordinator: claims "${volume.persistentVolumeClaim.claimName}", which the rendering does not contain`);
  }
  if (!main.args?.includes('--resume') || flag(main.args, '--resume') !== 'auto') problems.push('coordinator: not started with --resume auto (a restarted pod would start over)');

  // Workers: Indexed, N = N, one GPU each, disruptions ignored, waiting for a restarted coordinator.
  if (workers.completionMode !== 'Indexed') problems.push('workers: not an Indexed Job');
  if (workers.completions !== workers.parallelism) problems.push(`workers: completions ${workers.completions} != parallelism ${workers.parallelism}`);
  if (String(worker.resources?.limits?.['nvidia.com/gpu']) !== '1') problems.push('workers: no nvidia.com/gpu: 1 limit');
  for (const [who, spec] of [['coordinator', coordinator], ['workers', workers]] as const) {
    if (!spec.podFailurePolicy?.rules.some((r) => r.action === 'Ignore' && r.onPodConditions?.some((c) => c.type === 'DisruptionTarget'))) problems.push(`${who}: disruptions are not ignored`);
    // drover exits 143 when SIGTERM stopped it before the job completed (it checkpointed).
    if (!spec.podFailurePolicy?.rules.some((r) => r.action === 'Ignore' && r.onExitCodes?.operator === 'In' && r.onExitCodes.values.includes(143))) problems.push(`${who}: a pod stopped by SIGTERM (exit 143) counts as a failure`);
  }
  if (!/graphics/.test(worker.env?.find((e) => e.name === 'NVIDIA_DRIVER_CAPABILITIES')?.value ?? '')) problems.push('workers: NVIDIA_DRIVER_CAPABILITIES lacks graphics (no Vulkan for WebGPU)');
  if (!worker.args?.includes('--wait-for-resume')) problems.push('workers: without --wait-for-resume they finish when the coordinator pod is deleted');
  const headless = find('Service', workerPod.spec.subdomain ?? '') as (K8sObject & { spec: { clusterIP?: string; selector?: Record<string, string> } }) | undefined;
  if (!headless || headless.spec.clusterIP !== 'None') problems.push(`workers: subdomain "${workerPod.spec.subdomain}" is not a headless Service`);
  else if (!selects(headless.spec.selector, workerPod.metadata?.labels)) problems.push('the headless Service does not select the worker pods');
  return problems;
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  return selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

