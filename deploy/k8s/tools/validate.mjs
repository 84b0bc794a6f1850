// validate.mjs FILE.yaml... - schema and policy check of the Kubernetes manifests (no cluster).
//
// 1. Schema: every document is validated with the JSON Schema validators that the npm package
//    kubernetes-models bundles (generated from the Kubernetes OpenAPI: types, required fields,
//    enums, formats) for its apiVersion/kind; an unknown apiVersion/kind is an error.
// 2. Strict fields: every key must be a field of its type (the package's type declarations
//    list them), so a misspelt field ("readinesProbe") is an error, as kubectl --validate=strict
//    would report it; maps (labels, data, resources) are free-form.
// 3. Project policy: every Deployment has readiness and liveness probes (services: /readyz and
//    /livez), resource requests and limits, a non-root pod, no privilege escalation, a read-only
//    root file system, all capabilities dropped; a PodDisruptionBudget and a Service select
//    its pods; every Secret is referenced, none is defined here; every ConfigMap referenced
//    exists; kustomization.yaml lists every manifest.
// Prints one line per problem and "k8s-lint: N documents, N problems"; exit 1 on a problem.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import yaml from "js-yaml";

const here = path.dirname(new URL(import.meta.url).pathname);
const modules = path.join(here, "node_modules");
const require = createRequire(import.meta.url);
void require;

const problems = [];
const problem = (where, msg) => problems.push(`${where}: ${msg}`);

// ---- 2. strict fields from the .d.ts declarations -------------------------------------------

const dtsCache = new Map();

// The fields of the first interface declared in |file|: name -> {type, map, from}.
function dtsFields(file) {
    if (dtsCache.has(file)) {
        return dtsCache.get(file);
    }
    const text = fs.readFileSync(file, "utf8");
    const imports = new Map();
    for (const m of text.matchAll(/^import \{ ([^}]+) \} from "([^"]+)";$/gm)) {
        for (const name of m[1].split(",").map((s) => s.trim())) {
            imports.set(name, m[2]);
        }
    }
    const fields = new Map();
    const start = text.search(/^export interface \w+/m);
    const lines = start < 0 ? [] : text.slice(start).split("\n");
    for (let i = 1; i < lines.length && lines[i] !== "}"; i++) {
        const m = /^ {4}"([^"]+)"\??: (.*);?$/.exec(lines[i]);
        if (m) {
            const type = m[2].replace(/;$/, "");
            fields.set(m[1], { type, map: type.endsWith("{"), from: file, imports });
        }
    }
    dtsCache.set(file, fields);
    return fields;
}

// The .d.ts file of the interface named in |type| (as imported by |imports| in |from|).
function dtsOf(type, from, imports) {
    const m = /\b(I[A-Za-z0-9]+)\b/.exec(type);
    if (!m || !imports.has(m[1])) {
        return null;
    }
    const spec = imports.get(m[1]);
    let file;
    if (spec.startsWith(".")) {
        file = path.resolve(path.dirname(from), spec.replace(/\.js$/, "") + ".d.ts");
    } else {
        file = path.join(modules, spec.replace(/\.js$/, "") + ".d.ts");
    }
    return fs.existsSync(file) ? file : null;
}

function strict(value, file, where) {
    if (value === null || typeof value !== "object" || file === null) {
        return;
    }
    if (Array.isArray(value)) {
        value.forEach((v, i) => strict(v, file, `${where}[${i}]`));
        return;
    }
    const fields = dtsFields(file);
    if (fields.size === 0) {
        return; // Quantity, IntOrString, Time ...: no object fields
    }
    for (const [key, v] of Object.entries(value)) {
        const f = fields.get(key);
        if (!f) {
            problem(where, `unknown field "${key}"`);
            continue;
        }
        if (f.map) {
            continue;
        }
        strict(v, dtsOf(f.type, f.from, f.imports), `${where}.${key}`);
    }
}

// ---- 1. schema validation ---------------------------------------------------------------------

function modelFile(doc) {
    const [group, version] = doc.apiVersion.includes("/")
        ? doc.apiVersion.split("/")
        : [null, doc.apiVersion];
    const dir = group ? path.join(group, version) : version;
    return path.join(modules, "kubernetes-models", dir, `${doc.kind}.js`);
}

async function validateSchema(doc, where) {
    if (typeof doc.apiVersion !== "string" || typeof doc.kind !== "string") {
        problem(where, "apiVersion and kind are required");
        return false;
    }
    const file = modelFile(doc);
    if (!fs.existsSync(file)) {
        problem(where, `unknown apiVersion/kind ${doc.apiVersion} ${doc.kind}`);
        return false;
    }
    const mod = await import(file);
    const Model = mod[doc.kind];
    try {
        new Model(doc).validate();
    } catch (e) {
        const errs = e.errors || [{ instancePath: "", message: e.message }];
        for (const err of errs) {
            problem(where, `schema: ${err.instancePath || "/"} ${err.message}`);
        }
    }
    strict(doc, file.replace(/\.js$/, ".d.ts"), where);
    return true;
}

// ---- 3. project policy ------------------------------------------------------------------------

function matches(selector, labels) {
    return (
        selector &&
        Object.keys(selector).length > 0 &&
        Object.entries(selector).every(([k, v]) => labels[k] === v)
    );
}

function probePath(probe) {
    if (!probe) {
        return null;
    }
    if (probe.httpGet) {
        return probe.httpGet.path;
    }
    const cmd = (probe.exec && probe.exec.command) || [];
    const url = cmd.find((s) => /^https?:\/\//.test(s));
    return url ? new URL(url).pathname : null;
}

function policy(docs) {
    const by = (kind) => docs.filter((d) => d.doc.kind === kind);
    const configMaps = new Set(by("ConfigMap").map((d) => d.doc.metadata.name));
    for (const { doc, where } of by("Secret")) {
        problem(where, `Secret ${doc.metadata.name} defined in the manifests (reference it only)`);
    }
    for (const { doc, where } of by("Deployment")) {
        const name = doc.metadata.name;
        const tpl = doc.spec.template;
        const pod = tpl.spec;
        const labels = tpl.metadata.labels || {};
        if (!matches(doc.spec.selector.matchLabels, labels)) {
            problem(where, `${name}: selector does not match the pod labels`);
        }
        const psc = pod.securityContext || {};
        if (psc.runAsNonRoot !== true || !(psc.runAsUser > 0)) {
            problem(where, `${name}: pod must set runAsNonRoot and a non-zero runAsUser`);
        }
        if (!psc.seccompProfile || psc.seccompProfile.type !== "RuntimeDefault") {
            problem(where, `${name}: pod must use the RuntimeDefault seccomp profile`);
        }
        const all = [...(pod.initContainers || []), ...pod.containers];
        for (const c of all) {
            const sc = c.securityContext || {};
            const r = c.resources || {};
            if (sc.allowPrivilegeEscalation !== false || sc.readOnlyRootFilesystem !== true) {
                problem(where, `${name}/${c.name}: no privilege escalation, read-only root fs`);
            }
            if (!sc.capabilities || !(sc.capabilities.drop || []).includes("ALL")) {
                problem(where, `${name}/${c.name}: must drop ALL capabilities`);
            }
            for (const k of ["requests", "limits"]) {
                if (!r[k] || !r[k].cpu || !r[k].memory) {
                    problem(where, `${name}/${c.name}: resources.${k} needs cpu and memory`);
                }
            }
            if (/:latest$|^[^:]+$/.test(c.image)) {
                problem(where, `${name}/${c.name}: image ${c.image} needs a fixed tag`);
            }
            for (const src of c.envFrom || []) {
                if (src.configMapRef && !configMaps.has(src.configMapRef.name)) {
                    problem(where, `${name}/${c.name}: ConfigMap ${src.configMapRef.name} missing`);
                }
            }
            for (const e of c.env || []) {
                if (e.value !== undefined && /secret|password|token|key=/i.test(e.name)) {
                    if (!/_DIR$|^NGINX_TLS_(CERT|KEY)$/.test(e.name)) {
                        problem(where, `${name}/${c.name}: ${e.name} inlined (use a Secret)`);
                    }
                }
            }
        }
        for (const c of pod.containers) {
            const ready = probePath(c.readinessProbe);
            const live = probePath(c.livenessProbe);
            const gateway = labels["app.kubernetes.io/component"] === "gateway";
            if (gateway ? ready !== "/healthz" : ready !== "/readyz") {
                problem(where, `${name}/${c.name}: readiness probe on ${ready}`);
            }
            if (gateway ? live !== "/healthz" : live !== "/livez") {
                problem(where, `${name}/${c.name}: liveness probe on ${live}`);
            }
        }
        const podNs = doc.metadata.namespace;
        const same = (d) => d.doc.metadata.namespace === podNs;
        if (!by("PodDisruptionBudget").some((d) => same(d) &&
                matches(d.doc.spec.selector.matchLabels, labels))) {
            problem(where, `${name}: no PodDisruptionBudget selects its pods`);
        }
        if (!by("Service").some((d) => same(d) && matches(d.doc.spec.selector, labels))) {
            problem(where, `${name}: no Service selects its pods`);
        }
        const secrets = (pod.volumes || []).filter((v) => v.secret);
        for (const v of secrets) {
            if (!v.secret.secretName) {
                problem(where, `${name}: secret volume ${v.name} names no Secret`);
            }
        }
    }
}

// ---- main -------------------------------------------------------------------------------------

const files = process.argv.slice(2);
const docs = [];
let kustomization = null;
for (const file of files) {
    let parsed;
    try {
        parsed = yaml.loadAll(fs.readFileSync(file, "utf8"));
    } catch (e) {
        problem(file, `YAML: ${e.message.split("\n")[0]}`);
        continue;
    }
    for (const [i, doc] of parsed.entries()) {
        if (doc === null || doc === undefined) {
            continue;
        }
        const where = `${file}#${i + 1} ${doc.kind || "?"} ${(doc.metadata || {}).name || ""}`;
        if (doc.kind === "Kustomization") {
            kustomization = { doc, file };
            continue;
        }
        if (await validateSchema(doc, where)) {
            docs.push({ doc, where });
        }
    }
}
if (kustomization) {
    const listed = new Set(kustomization.doc.resources || []);
    const dir = path.dirname(kustomization.file);
    for (const file of files) {
        const rel = path.relative(dir, file);
        if (path.resolve(file) !== path.resolve(kustomization.file) && !listed.has(rel)) {
            problem(kustomization.file, `does not list ${rel}`);
        }
    }
    for (const rel of listed) {
        if (!fs.existsSync(path.join(dir, rel))) {
            problem(kustomization.file, `lists missing ${rel}`);
        }
    }
}
try {
    policy(docs);
} catch (e) {
    problem("policy", `a manifest lacks a required part: ${e.message}`);
}
for (const p of problems) {
    console.log(p);
}
console.log(`k8s-lint: ${docs.length} documents, ${problems.length} problems`);
process.exit(problems.length === 0 && docs.length > 0 ? 0 : 1);
