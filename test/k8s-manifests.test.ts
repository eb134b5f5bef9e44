import test from 'ava';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from './helpers/cluster.ts';
import { deploymentProblems, jobSpecs, renderKustomization, schemaProblems, type K8sObject } from './helpers/k8s-manifests.ts';

const BASE = path.join(REPO_ROOT, 'deploy/k8s');
const JOBSET = path.join(REPO_ROOT, 'deploy/jobset');

/** The image's working folder, where relative output folders land (Containerfile WORKDIR). */
async function imageWorkdir(): Promise<string> {
  const workdirs = [...(await readFile(path.join(REPO_ROOT, 'Containerfile'), 'utf8')).matchAll(/^WORKDIR\s+(\S+)/gm)];
  return workdirs.at(-1)![1]!;
}

for (const [label, dir] of [['the kustomize base (deploy/k8s)', BASE], ['the JobSet overlay (deploy/jobset)', JOBSET]] as const) {
  test(`${label} renders, every object validates, and the pods find the Secret, Service port, job file and volume they need`, async (t) => {
    const { objects, renderer, reason } = await renderKustomization(dir);
    if (reason) t.log(`rendering skipped: ${reason}`);
    t.true(objects.length >= 6, `${objects.length} objects (${renderer})`);
    t.deepEqual(schemaProblems(objects), []);
    t.deepEqual(deploymentProblems(objects, { workdir: await imageWorkdir() }), []);
  });
}

test('the JobSet runs the same pods as the base\'s two Jobs', async (t) => {
  const base = jobSpecs((await renderKustomization(BASE)).objects);
  const jobSet = jobSpecs((await renderKustomization(JOBSET)).objects);
  t.deepEqual(jobSet.coordinator, base.coordinator);
  t.deepEqual(jobSet.workers, base.workers);
});

/** A deep copy of the rendering with one mistake made in it. */
function mistake(objects: K8sObject[], edit: (objects: K8sObject[]) => void): K8sObject[] {
  const copy = structuredClone(objects);
  edit(copy);
  return copy;
}

const named = (objects: K8sObject[], kind: string, name: string): Record<string, any> => objects.find((o) => o.kind === kind && o.metadata.name === name)!; // eslint-disable-line @typescript-eslint/no-explicit-any

test('the checks catch the mistakes that would break a deployment', async (t) => {
  const { objects } = await renderKustomization(BASE);
  const workdir = await imageWorkdir();
  const cases: [string, (o: K8sObject[]) => void, RegExp][] = [
    ['Secret renamed', (o) => { named(o, 'Secret', 'drover-token').metadata.name = 'drover-secret'; }, /reads Secret "drover-token"/],
    ['token key renamed', (o) => { named(o, 'Secret', 'drover-token').stringData = { password: 'x' }; }, /has no key "token"/],
    ['Service port changed', (o) => { named(o, 'Service', 'drover-coordinator').spec.ports[0].port = 7000; }, /has no such port/],
    ['Service targets the metrics port', (o) => { named(o, 'Service', 'drover-coordinator').spec.ports[0].targetPort = 'metrics'; }, /leads to 9464/],
    ['coordinator --port changed', (o) => { const c = named(o, 'Job', 'drover-coordinator').spec.template.spec.containers[0]; c.args[c.args.indexOf('--port') + 1] = '7171'; }, /listens on 7171/],
    ['--port dropped, the job file listens elsewhere', (o) => {
      const c = named(o, 'Job', 'drover-coordinator').spec.template.spec.containers[0];
      c.args = c.args.filter((a: string, i: number, all: string[]) => a !== '--port' && all[i - 1] !== '--port');
      const job = named(o, 'ConfigMap', 'drover-job');
      job.data['job.yaml'] = job.data['job.yaml'].replace('port: 7070', 'port: 7171');
    }, /listens on 7171/],
    ['output volume not mounted at the work folder', (o) => { named(o, 'Job', 'drover-coordinator').spec.template.spec.containers[0].volumeMounts[0].mountPath = '/output'; }, /writes \/data\/runs\/drover-k8s, which is not on a PersistentVolumeClaim/],
    ['PVC renamed', (o) => { named(o, 'PersistentVolumeClaim', 'drover-output').metadata.name = 'output'; }, /claims "drover-output"/],
    ['Service selects workers', (o) => { named(o, 'Service', 'drover-coordinator').spec.selector['app.kubernetes.io/component'] = 'worker'; }, /does not select the coordinator pod/],
    ['no GPU', (o) => { delete named(o, 'Job', 'drover-workers').spec.template.spec.containers[0].resources.limits['nvidia.com/gpu']; }, /nvidia\.com\/gpu/],
    ['bad job file', (o) => { const c = named(o, 'ConfigMap', 'drover-job'); c.data['job.yaml'] += '\nbatchSize: 64\n'; }, /does not validate/],
    ['deleted pods count as failures', (o) => { named(o, 'Job', 'drover-coordinator').spec.podFailurePolicy.rules.pop(); }, /coordinator: a pod stopped by SIGTERM/],
    ['probe on the metrics port', (o) => { named(o, 'Job', 'drover-coordinator').spec.template.spec.containers[0].readinessProbe.grpc.port = 9464; }, /readinessProbe/],
    ['liveness on the readiness status', (o) => { named(o, 'Job', 'drover-coordinator').spec.template.spec.containers[0].livenessProbe.grpc.service = 'drover.v1.Coordinator'; }, /livenessProbe reads health service "drover.v1.Coordinator"/],
    ['liveness on the whole server', (o) => { delete named(o, 'Job', 'drover-coordinator').spec.template.spec.containers[0].livenessProbe.grpc.service; }, /livenessProbe reads health service ""/],
    ['readiness on liveness', (o) => { named(o, 'Job', 'drover-coordinator').spec.template.spec.containers[0].readinessProbe.grpc.service = 'drover.v1.Liveness'; }, /readinessProbe reads health service/],
  ];
  for (const [what, edit, expected] of cases) {
    const problems = deploymentProblems(mistake(objects, edit), { workdir });
    t.true(problems.some((p) => expected.test(p)), `${what}: ${JSON.stringify(problems)}`);
  }
  const badSchema = mistake(objects, (o) => { named(o, 'Job', 'drover-workers').spec.completions = 'two'; });
  t.true(schemaProblems(badSchema).some((p) => /completions must be integer/.test(p)));
  const badIndex = mistake(objects, (o) => { named(o, 'Job', 'drover-workers').spec.backoffLimitPerIndex = -1; });
  t.true(schemaProblems(badIndex).some((p) => /backoffLimitPerIndex/.test(p)));
});

test('a JobSet field the schema does not know is refused', async (t) => {
  const { objects } = await renderKustomization(JOBSET);
  const typo = mistake(objects, (o) => { named(o, 'JobSet', 'drover').spec.sucessPolicy = {}; });
  t.true(schemaProblems(typo).some((p) => /JobSet\/drover/.test(p)));
});
