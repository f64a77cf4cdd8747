#!/usr/bin/env python3
"""Renders the ibwarden Helm chart offline (no helm binary, no cluster) and optionally
validates every manifest against the Kubernetes schemas.

    python3 packaging/helm/render.py [VALUES.yaml ...]        # prints the manifests
    python3 packaging/helm/render.py --validate 1.30 values.yaml
    python3 packaging/helm/render.py --json --validate 1.30 --lint values.yaml

Values files are merged in order like `helm -f a.yaml -f b.yaml` (maps deep-merged, lists
replaced). Needs the Python packages helm-python-sdk (Helm's Go SDK as a library),
kubernetes-validate and PyYAML: `scripts/test-deps-python` installs them into target/pyvenv,
and this script re-runs itself with that venv's python when they are missing here.

Exit status: 0 rendered (and valid), 1 the chart refused the values (its message on stderr)
or bad usage, 2 rendered but a manifest is invalid or lint found a problem.

--json prints one object instead of YAML:
  {"chart": {Chart.yaml}, "manifests": [{"source": "ibwarden/templates/x.yaml",
   "object": {...}}, ...], "yaml": "the manifests as YAML", "notes": "NOTES.txt rendered",
   "problems": ["...", ...]}
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHART = HERE / "ibwarden"
REPO = HERE.parent.parent


def import_deps():
    try:
        import helm_python  # noqa: F401
        import kubernetes_validate  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        venv = REPO / "target" / "pyvenv"
        venv_python = venv / "bin" / "python"
        if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve() \
                and not os.environ.get("IBW_RENDER_REEXEC"):
            os.environ["IBW_RENDER_REEXEC"] = "1"
            os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
        sys.exit(f"render.py: {e}; run scripts/test-deps-python (it creates target/pyvenv) "
                 f"or pip install helm-python-sdk kubernetes-validate PyYAML")


def deep_merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base[k], v) if k in base else v
        return out
    return over


def render(values, release, namespace):
    """Returns (manifests [(source, object)], notes, Chart.yaml as a dict). Raises
    helm_python.HelmError."""
    import helm_python
    import yaml

    with helm_python.Chart.load(str(CHART)) as chart:
        # helm install validates the values against values.schema.json first; so do we.
        chart.validate_schema(values)
        rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
        metadata = chart.metadata
    manifests, notes = [], ""
    for source in sorted(rendered):
        text = rendered[source]
        if source.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                manifests.append((source, doc))
    return manifests, notes, metadata


def to_yaml(manifests):
    import yaml

    return "".join(f"---\n# Source: {source}\n"
                   + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)
                   for source, obj in manifests)


# ----------------------------------------------------------------------------- checks

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PROM_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def label_problems(labels, where):
    out = []
    for k, v in (labels or {}).items():
        prefix, _, name = k.rpartition("/")
        if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
            out.append(f"{where}: label key {k!r}: prefix is not a DNS subdomain")
        if len(name) > 63 or not LABEL_NAME.match(name):
            out.append(f"{where}: label key {k!r} is invalid")
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            out.append(f"{where}: label {k}={v!r}: not a valid label value")
    return out


def pod_templates(obj):
    spec = obj.get("spec") or {}
    if obj.get("kind") in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"):
        yield (spec.get("template") or {})


def validate_service_monitor(obj, where):
    """ServiceMonitor is a CRD of the Prometheus Operator: kubernetes-validate bundles no
    schema for it, so this checks its structure against the fields of
    monitoring.coreos.com/v1 that the chart may use."""
    out = []
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        out.append(f"{where}: apiVersion must be monitoring.coreos.com/v1")
    allowed_top = {"apiVersion", "kind", "metadata", "spec"}
    out += [f"{where}: unknown top-level field {k!r}" for k in obj if k not in allowed_top]
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return out + [f"{where}: spec must be a map"]
    allowed_spec = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                    "podTargetLabels", "sampleLimit", "targetLimit"}
    out += [f"{where}: unknown spec field {k!r}" for k in spec if k not in allowed_spec]
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        out.append(f"{where}: spec.selector needs matchLabels or matchExpressions")
    else:
        out += label_problems(sel.get("matchLabels"), f"{where}: spec.selector")
    ns = spec.get("namespaceSelector")
    if ns is not None and not (isinstance(ns, dict) and set(ns) <= {"any", "matchNames"}):
        out.append(f"{where}: spec.namespaceSelector takes any or matchNames")
    for key in ("targetLabels", "podTargetLabels"):
        v = spec.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            out.append(f"{where}: spec.{key} must be a list of label names")
    eps = spec.get("endpoints")
    if not isinstance(eps, list) or not eps:
        return out + [f"{where}: spec.endpoints must be a non-empty list"]
    allowed_ep = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
                  "honorLabels", "relabelings", "metricRelabelings", "params"}
    for i, ep in enumerate(eps):
        w = f"{where}: spec.endpoints[{i}]"
        if not isinstance(ep, dict):
            out.append(f"{w} must be a map")
            continue
        out += [f"{w}: unknown field {k!r}" for k in ep if k not in allowed_ep]
        if not isinstance(ep.get("port"), str) and "targetPort" not in ep:
            out.append(f"{w}: needs port (a Service port name)")
        if "path" in ep and not (isinstance(ep["path"], str) and ep["path"].startswith("/")):
            out.append(f"{w}: path must start with /")
        if ep.get("scheme", "http") not in ("http", "https"):
            out.append(f"{w}: scheme must be http or https")
        for d in ("interval", "scrapeTimeout"):
            if d in ep and not (isinstance(ep[d], str) and PROM_DURATION.match(ep[d])):
                out.append(f"{w}: {d} {ep[d]!r} is not a Prometheus duration")
    return out


def validate(manifests, kube_version):
    """Problems found in the rendered manifests (empty: all valid)."""
    import kubernetes_validate

    problems, seen = [], set()
    for source, obj in manifests:
        if not isinstance(obj, dict):
            problems.append(f"{source}: a document is not a map")
            continue
        kind = obj.get("kind")
        name = (obj.get("metadata") or {}).get("name", "")
        where = f"{source}: {kind}/{name}"
        key = (obj.get("apiVersion"), kind, name)
        if key in seen:
            problems.append(f"{where}: rendered twice")
        seen.add(key)
        if kind == "ServiceMonitor":
            problems += validate_service_monitor(obj, where)
        else:
            try:
                kubernetes_validate.validate(obj, kube_version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top)"
                problems.append(f"{where}: {path}: {e.message}")
            except Exception as e:  # no schema for the kind, etc.
                problems.append(f"{where}: {type(e).__name__}: {e}")
        # What the schemas do not check: names and labels.
        name_re = DNS1035_LABEL if kind == "Service" else DNS1123_SUBDOMAIN
        if not isinstance(name, str) or len(name) > (63 if kind == "Service" else 253) \
                or not name_re.match(name):
            problems.append(f"{where}: invalid object name {name!r}")
        if kind == "StatefulSet" and len(name) > 52:
            problems.append(f"{where}: a StatefulSet name over 52 characters breaks its pods' "
                            f"controller-revision-hash label")
        problems += label_problems((obj.get("metadata") or {}).get("labels"), where)
        for tpl in pod_templates(obj):
            problems += label_problems((tpl.get("metadata") or {}).get("labels"),
                                       f"{where}: pod template")
            for c in (tpl.get("spec") or {}).get("containers") or []:
                names = [e.get("name") for e in c.get("env") or []]
                dups = sorted({n for n in names if names.count(n) > 1})
                if dups:
                    problems.append(f"{where}: container {c.get('name')}: env set twice: {dups}")
    return problems


def lint(values, kube_version):
    import helm_python

    version = f"v{kube_version}.0" if kube_version.count(".") == 1 else f"v{kube_version}"
    # Lint renders leniently (a `fail` is only logged, to stderr by the Go side): the render
    # above already reported those; keep the log out of the output.
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            report = helm_python.lint(str(CHART), values, strict=True, kube_version=version)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    out = [f"lint: {m.get('path', '')}: {m.get('error', '')}"
           for m in report.get("messages") or [] if int(m.get("severity", 0)) >= 2]
    out += [f"lint: {e}" for e in report.get("errors") or []]
    return out


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("values", nargs="*", help="values files (merged in order)")
    p.add_argument("-f", "--values-file", action="append", default=[], dest="more",
                   metavar="VALUES",
                   help="another values file (after the positional ones)")
    p.add_argument("--release", default="ibwarden", help="release name [ibwarden]")
    p.add_argument("--namespace", default="default", help="namespace [default]")
    p.add_argument("--validate", metavar="KUBE_VERSION",
                   help="validate every manifest against this Kubernetes version's schemas "
                        "(strict: unknown fields are errors), e.g. 1.30")
    p.add_argument("--lint", action="store_true", help="also run helm lint --strict")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    import_deps()
    import helm_python
    import yaml

    values = {}
    for f in [*args.values, *args.more]:
        with open(f, encoding="utf-8") as fh:
            values = deep_merge(values, yaml.safe_load(fh) or {})
    try:
        manifests, notes, metadata = render(values, args.release, args.namespace)
    except helm_python.HelmError as e:
        print(f"render.py: the chart refused the values: {e}", file=sys.stderr)
        return 1
    problems = []
    if args.validate:
        problems += validate(manifests, args.validate)
    if args.lint:
        problems += lint(values, args.validate or "1.30")
    if args.json:
        json.dump({"chart": metadata,
                   "manifests": [{"source": s, "object": o} for s, o in manifests],
                   "yaml": to_yaml(manifests), "notes": notes, "problems": problems},
                  sys.stdout, indent=1)
        print()
    else:
        print(to_yaml(manifests), end="")
        for problem in problems:
            print(f"render.py: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
