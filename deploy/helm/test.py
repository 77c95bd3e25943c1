#!/usr/bin/env python3
"""Render test of the Helm chart (invoked from scripts/test.sh; `python3 deploy/helm/test.py`).

No Helm binary can be installed here, so the chart is rendered by render.py (the subset of Go
templates the chart keeps to), for each way it is deployed, and every rendered object is checked:

- against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail);
- cross-references: each Deployment's ServiceAccount exists, each Service selects a pod
  template and its targetPorts are named container ports, each binding's roleRef exists;
- the contract: Service ports (42113, 7171, 7172, 67/69/514 UDP), TINKERBELL_* env names,
  hostNetwork / relay switch, leader election + concurrency env, RBAC rules exactly as pinned
  below, non-root where possible;
- every env name the chart sets on a container is one its binary accepts: the names are read
  from `<binary> --help` (clap prints `[env: NAME=]`) of the built binaries (TINKERBELL_BIN_DIR,
  else target/debug or the static release dir); without them the check fails under CI=true and
  is skipped otherwise;
- the chart's CRDs equal deploy/crds, and the example objects of core/tests/fixtures validate
  against those CRDs' openAPIV3Schema;
- generated files (manifests, README values table) are fresh; every value is documented.

Prints 'N passed, N failed'; exit 1 on any failure.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
import sys
import traceback

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import generate  # noqa: E402
from render import TemplateError, render_chart  # noqa: E402

CHART = os.path.join(HERE, "tinkerbell")
K8S_VERSION = "1.33"

try:
    import kubernetes_validate
except ImportError:  # pragma: no cover - reported as a failure below
    kubernetes_validate = None

R = ["get", "list", "watch"]
RBAC = {
    "boots": {("tinkerbell.org", "hardware"): R},
    "hegel": {("tinkerbell.org", "hardware"): R},
    "tink-server": {
        ("tinkerbell.org", "hardware"): R,
        ("tinkerbell.org", "templates"): R,
        ("tinkerbell.org", "workflows"): R + ["update", "patch"],
        ("tinkerbell.org", "workflows/status"): ["get", "update", "patch"],
    },
    "tink-controller": {
        ("tinkerbell.org", "templates"): R,
        ("tinkerbell.org", "hardware"): R + ["update", "patch"],
        ("tinkerbell.org", "workflows"): R + ["update", "patch"],
        ("tinkerbell.org", "workflows/status"): ["get", "update", "patch"],
        ("bmc.tinkerbell.org", "jobs"): R + ["create", "delete"],
        ("bmc.tinkerbell.org", "jobs/status"): ["get"],
        ("", "events"): ["create", "patch"],
    },
    "rufio": {
        ("bmc.tinkerbell.org", "machines"): R + ["update", "patch"],
        ("bmc.tinkerbell.org", "jobs"): R + ["update", "patch"],
        ("bmc.tinkerbell.org", "machines/status"): ["get", "update", "patch"],
        ("bmc.tinkerbell.org", "jobs/status"): ["get", "update", "patch"],
        ("bmc.tinkerbell.org", "tasks/status"): ["get", "update", "patch"],
        ("bmc.tinkerbell.org", "tasks"): R + ["create", "update", "patch", "delete"],
        ("", "secrets"): R,
        ("", "events"): ["create", "patch"],
    },
}
SERVICE_PORTS = {
    "boots": {(67, "UDP"), (69, "UDP"), (514, "UDP"), (7171, "TCP")},
    "hegel": {(7172, "TCP")},
    "tink-server": {(42113, "TCP")},
}
LEADER = {"tink-controller": "TINK_CONTROLLER", "rufio": "RUFIO"}

# name -> values; every deployment shape the docs describe.
CASES = {
    "defaults": {"publicIP": "10.0.0.5"},
    "workload-relay": {
        "publicIP": "10.0.0.5",
        "boots": {"dhcpRelay": {"enabled": True, "interface": "eno1", "address": "10.0.0.5/24"}},
        "service": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.5",
                    "loadBalancerClass": "kube-vip.io/kube-vip-class"},
        "tinkController": {"leaderElection": True}, "rufio": {"maxConcurrent": 10},
        "watchNamespace": "eksa-system", "trustedProxies": "192.168.0.0/16",
    },
    "host-network": {"publicIP": "10.0.0.5", "boots": {"hostNetwork": True}},
    "bootstrap": {"boots": {"enabled": False}, "watchNamespace": "eksa-system"},
    "namespaced-rbac": {"publicIP": "10.0.0.5", "rbac": {"scope": "namespace"},
                        "watchNamespace": "eksa-system",
                        "tinkController": {"leaderElection": False}},
    "extras": {"publicIP": "10.0.0.5", "hegel": {"extraEnv": [{"name": "TINKERBELL_X", "value": "1"}],
                                                  "resources": {"limits": {"memory": "64Mi"}}}},
    "worker-auth-off": {"publicIP": "10.0.0.5", "workerAuth": {"enabled": False}},
    "worker-key-given": {"publicIP": "10.0.0.5", "workerAuth": {"key": "k" * 40}},
    "worker-key-own-secret": {"publicIP": "10.0.0.5",
                              "workerAuth": {"create": False, "secretName": "site-worker-key"}},
}

passed = failed = 0


def check(name, fn, *args):
    global passed, failed
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        failed += 1
        print(f"FAIL {name}: {e}")
        if os.environ.get("VERBOSE"):
            traceback.print_exc()
    else:
        passed += 1
        print(f"ok   {name}")


def render(values):
    return [d for d in yaml.safe_load_all(render_chart(CHART, values)) if d]


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def comp(obj):
    return obj["metadata"]["labels"]["app.kubernetes.io/name"]


def validate_k8s(objs):
    if kubernetes_validate is None:
        raise AssertionError("kubernetes-validate is not installed (scripts/install-deps.sh)")
    for o in objs:
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except Exception as e:
            raise AssertionError(f"{o['kind']}/{o['metadata']['name']}: {e}") from None


def cross_refs(objs, values):
    sas = by_kind(objs, "ServiceAccount")
    deps = by_kind(objs, "Deployment")
    roles = {(o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] in ("Role", "ClusterRole")}
    for name, d in deps.items():
        spec = d["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] in sas, f"{name}: no ServiceAccount {spec['serviceAccountName']}"
        sel = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in sel.items()), f"{name}: selector does not match"
        c = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        for e in env:
            assert e.startswith("TINKERBELL_") or e == "HEGEL_HTTP_ADDR", f"{name}: env {e}"
        assert env["TINKERBELL_BACKEND"] == "kube"
        assert env["TINKERBELL_BACKEND_KUBE_NAMESPACE"] == values.get("watchNamespace", "")
        assert c["image"].startswith("tinkerbell-rs/") and c["image"].endswith(":0.1.0"), c["image"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        if comp(d) != "boots":
            assert sc["runAsNonRoot"] is True and sc["capabilities"]["drop"] == ["ALL"], name
        else:
            assert sorted(sc["capabilities"]["add"]) == ["NET_BIND_SERVICE", "NET_RAW"]
    for name, s in by_kind(objs, "Service").items():
        sel = s["spec"]["selector"]
        targets = [d for d in deps.values()
                   if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} Deployments"
        cports = {p["name"] for p in targets[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in cports, f"Service {name}: targetPort {p['targetPort']} not a container port"
        got = {(p["port"], p["protocol"]) for p in s["spec"]["ports"]}
        assert got == SERVICE_PORTS[comp(s)], f"Service {name}: ports {got}"
        svc = values.get("service", {})
        assert s["spec"]["type"] == svc.get("type", "ClusterIP")
        if svc.get("loadBalancerIP"):
            assert s["metadata"]["annotations"]["kube-vip.io/loadbalancerIPs"] == svc["loadBalancerIP"]
    for o in objs:
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            ref = (o["roleRef"]["kind"], o["roleRef"]["name"])
            assert ref in roles, f"{o['kind']}/{o['metadata']['name']}: roleRef {ref} not rendered"
            for s in o["subjects"]:
                assert s["name"] in sas, f"binding {o['metadata']['name']}: subject {s['name']}"


def rbac_exact(objs, values):
    scope_kind = "ClusterRole" if values.get("rbac", {}).get("scope", "cluster") == "cluster" else "Role"
    enabled = {comp(d) for d in by_kind(objs, "Deployment").values()}
    for c in enabled:
        role = [o for o in objs if o["kind"] == scope_kind and o["metadata"]["name"] == f"tinkerbell-{c}"]
        assert len(role) == 1, f"{c}: {scope_kind} missing"
        if scope_kind == "Role":
            assert role[0]["metadata"]["namespace"] == values["watchNamespace"]
        got = {}
        for rule in role[0]["rules"]:
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    assert (g, r) not in got, f"{c}: {g}/{r} twice"
                    got[(g, r)] = sorted(rule["verbs"])
        want = {k: sorted(v) for k, v in RBAC[c].items()}
        assert got == want, f"{c}: rules {got} != pinned {want}"
        lease = [o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == f"tinkerbell-{c}-leader-election"]
        if c in LEADER:
            assert lease and lease[0]["rules"][0]["resources"] == ["leases"], f"{c}: no lease Role"
        else:
            assert not lease, f"{c}: has a lease Role it does not need"
    for o in objs:  # nobody may write secrets
        for rule in o.get("rules", []):
            if "secrets" in rule["resources"]:
                assert set(rule["verbs"]) <= set(R), f"{o['metadata']['name']}: writes secrets"


def boots_shape(objs, values):
    deps = by_kind(objs, "Deployment")
    b = values.get("boots", {})
    if b.get("enabled", True) is False:
        assert "tinkerbell-boots" not in deps and "tinkerbell-boots" not in by_kind(objs, "Service")
        return
    spec = deps["tinkerbell-boots"]["spec"]["template"]["spec"]
    assert spec.get("hostNetwork", False) == b.get("hostNetwork", False)
    relay = b.get("dhcpRelay", {}).get("enabled", False)
    inits = spec.get("initContainers", [])
    assert bool(inits) == relay and spec.get("hostPID", False) == relay
    if relay:
        script = inits[0]["command"][-1]
        assert f"link {b['dhcpRelay']['interface']} type macvlan" in script, script
        assert f"ip addr add {b['dhcpRelay']['address']} dev tb-dhcp0" in script
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["TINKERBELL_PUBLIC_IPV4"] == values["publicIP"]
    assert env["TINKERBELL_IPXE_SCRIPT_TINK_SERVER_ADDR_PORT"] == f"{values['publicIP']}:42113"
    assert env["TINKERBELL_DHCP_MODE"] == "reservation"


def controllers(objs, values):
    deps = by_kind(objs, "Deployment")
    for c, prefix in LEADER.items():
        key = {"tink-controller": "tinkController", "rufio": "rufio"}[c]
        defaults = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))[key]
        v = generate_merge(defaults, values.get(key, {}))
        env = {e["name"]: e["value"] for e in deps[f"tinkerbell-{c}"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env[f"TINKERBELL_{prefix}_ENABLE_LEADER_ELECTION"] == str(v["leaderElection"]).lower()
        assert env[f"TINKERBELL_{prefix}_LEADER_ELECTION_NAMESPACE"] == "tinkerbell"
        if c == "rufio":
            assert env["TINKERBELL_RUFIO_MAX_CONCURRENT"] == str(v["maxConcurrent"])


def worker_key(objs, values):
    """tink-server and boots mount one Secret as the worker token key file, and the chart
    creates that Secret (with a usable key) exactly when asked to."""
    defaults = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))["workerAuth"]
    w = generate_merge(defaults, values.get("workerAuth", {}))
    users = [d for d in by_kind(objs, "Deployment").values() if comp(d) in ("tink-server", "boots")]
    assert users, "neither tink-server nor boots rendered"
    mounted = set()
    for d in users:
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        if comp(d) == "tink-server":
            assert env["TINKERBELL_TINK_SERVER_WORKER_AUTH"] == str(w["enabled"]).lower()
        if not w["enabled"]:
            assert "TINKERBELL_WORKER_TOKEN_KEY_FILE" not in env and not spec.get("volumes"), comp(d)
            continue
        vol = {v["name"]: v for v in spec["volumes"]}["worker-token-key"]
        mount = {m["name"]: m for m in c["volumeMounts"]}["worker-token-key"]
        assert mount["readOnly"] is True
        assert env["TINKERBELL_WORKER_TOKEN_KEY_FILE"] == mount["mountPath"] + "/key", comp(d)
        mounted.add(vol["secret"]["secretName"])
        user = c["securityContext"].get("runAsUser", 0)
        mode = vol["secret"]["defaultMode"]
        assert not mode & 0o007, f"{comp(d)}: key file mode {mode:o} is world-readable"
        if user != 0:  # readable through the pod's fsGroup
            assert spec["securityContext"]["fsGroup"] == user and mode & 0o040, comp(d)
    secrets_ = by_kind(objs, "Secret")
    if not w["enabled"]:
        assert not secrets_, secrets_.keys()
        return
    assert mounted == {w["secretName"]}, f"tink-server and boots mount {mounted}, want {w['secretName']}"
    if w["create"]:
        s = secrets_[w["secretName"]]
        assert s["metadata"]["namespace"] == "tinkerbell"
        assert s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        key = base64.b64decode(s["data"]["key"]).decode()
        assert len(key) >= 32, f"generated key is {len(key)} bytes"
        if w["key"]:
            assert key == w["key"]
    else:
        assert w["secretName"] not in secrets_, "created a Secret the user brings"


def worker_key_kept():
    """A first install generates a new random key; an upgrade keeps the key the Secret holds."""
    def key(cluster=None):
        objs = [d for d in yaml.safe_load_all(render_chart(CHART, {"publicIP": "10.0.0.5"}, cluster=cluster)) if d]
        return base64.b64decode(by_kind(objs, "Secret")["tinkerbell-worker-token-key"]["data"]["key"]).decode()
    a, b = key(), key()
    assert a != b and len(a) == 64 and a.isalnum(), (a, b)
    existing = {("v1", "Secret", "tinkerbell", "tinkerbell-worker-token-key"):
                {"data": {"key": base64.b64encode(b"kept-" + b"x" * 40).decode()}}}
    assert key(existing) == "kept-" + "x" * 40


# Container name -> binary.
BINARIES = {"boots": "boots", "hegel": "hegel", "tink-server": "tink-server",
            "tink-controller": "tink-controller", "rufio": "rufio"}
# Env names the chart sets for flags another branch is adding to a binary (name -> why). The
# check fails once the binary accepts one of them, so this list cannot go stale.
PENDING = {}
_accepted = {}


def bin_dir():
    """Where the built service binaries are, or None."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    dirs = [os.environ.get("TINKERBELL_BIN_DIR")] + [
        os.path.join(target, d) for d in ("debug", "x86_64-unknown-linux-gnu/release", "release")]
    for d in dirs:
        if d and all(os.access(os.path.join(d, b), os.X_OK) for b in BINARIES.values()):
            return d
    return None


def accepted_env(binary):
    """The env names `<binary> --help` lists (run with an empty environment, so no values)."""
    if binary not in _accepted:
        out = subprocess.run([os.path.join(bin_dir(), binary), "--help"], env={},
                             capture_output=True, text=True, check=True, timeout=30).stdout
        _accepted[binary] = set(re.findall(r"\[env: ([A-Za-z0-9_]+)", out))
        assert _accepted[binary], f"{binary} --help lists no env names"
    return _accepted[binary]


def env_names_accepted(objs, values):
    """Every env name a container gets from the chart is one its binary reads."""
    wrong = []
    for dep in by_kind(objs, "Deployment").values():
        for c in dep["spec"]["template"]["spec"]["containers"]:
            binary = BINARIES[c["name"]]
            extra = {e["name"] for e in values.get(
                {"tink-server": "tinkServer", "tink-controller": "tinkController"}.get(c["name"], c["name"]),
                {}).get("extraEnv", [])}
            ok = accepted_env(binary)
            pending = PENDING.get(binary, {})
            for e in c.get("env", []):
                name = e["name"]
                if name in extra:
                    continue  # the user's own
                if name in pending:
                    if name in ok:
                        wrong.append(f"{binary} now accepts {name}: remove it from PENDING")
                    continue
                if name not in ok:
                    wrong.append(f"{c['name']}: {name} is not a {binary} env name")
    assert not wrong, "; ".join(sorted(set(wrong)))


def generate_merge(a, b):
    out = copy.deepcopy(a)
    out.update(b)
    return out


def extras(objs, _values):
    c = by_kind(objs, "Deployment")["tinkerbell-hegel"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "TINKERBELL_X", "value": "1"} in c["env"]
    assert c["resources"] == {"limits": {"memory": "64Mi"}}


def crd_schema(kind_plural):
    for name in os.listdir(os.path.join(ROOT, "deploy", "crds")):
        crd = yaml.safe_load(open(os.path.join(ROOT, "deploy", "crds", name)))
        if crd["spec"]["names"]["plural"] + "." + crd["spec"]["group"] == kind_plural:
            return crd


def openapi_to_jsonschema(s):
    if isinstance(s, dict):
        out = {k: openapi_to_jsonschema(v) for k, v in s.items() if not k.startswith("x-kubernetes-")}
        if s.get("nullable"):
            t = out.get("type")
            if isinstance(t, str):
                out["type"] = [t, "null"]
        out.pop("nullable", None)
        return out
    if isinstance(s, list):
        return [openapi_to_jsonschema(v) for v in s]
    return s


# Parser edge-case fixtures the API server would reject under our CRDs (and why).
EXPECTED_INVALID = {
    # interfaces[2].dhcp.mac is "" (tests that the store tolerates it); the CRD pattern
    # requires a MAC, so such an object can live in the embedded store but not in Kubernetes.
    "hardware_full.yaml": "mac",
}


def fixtures_validate():
    import jsonschema

    plural = {"Hardware": "hardware", "Template": "templates", "Workflow": "workflows",
              "Machine": "machines", "Job": "jobs", "Task": "tasks"}
    fdir = os.path.join(ROOT, "core", "tests", "fixtures")
    seen = set()
    for name in sorted(os.listdir(fdir)):
        if not name.endswith(".yaml"):
            continue
        for obj in yaml.safe_load_all(open(os.path.join(fdir, name))):
            if not obj or obj.get("kind") not in plural:
                continue
            group = obj["apiVersion"].split("/")[0]
            crd = crd_schema(f"{plural[obj['kind']]}.{group}")
            assert crd, f"{name}: no CRD for {obj['kind']}"
            version = obj["apiVersion"].split("/")[1]
            schema = [v for v in crd["spec"]["versions"] if v["name"] == version][0]["schema"]["openAPIV3Schema"]
            if name in EXPECTED_INVALID:
                try:
                    jsonschema.validate(obj, openapi_to_jsonschema(schema))
                except jsonschema.ValidationError as e:
                    assert EXPECTED_INVALID[name] in str(e.path), f"{name}: {e.message}"
                    continue
                raise AssertionError(f"{name} validated, but it was expected not to")
            jsonschema.validate(obj, openapi_to_jsonschema(schema))
            seen.add(obj["kind"])
    assert {"Hardware", "Machine", "Job", "Task"} <= seen, f"fixtures covered only {seen}"
    # A wrong type must fail (the validation is not vacuous).
    hw = [o for o in yaml.safe_load_all(open(os.path.join(fdir, "hardware_full.yaml"))) if o][0]
    bad = copy.deepcopy(hw)
    bad["spec"]["interfaces"] = "not-a-list"
    schema = crd_schema("hardware.tinkerbell.org")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    try:
        jsonschema.validate(bad, openapi_to_jsonschema(schema))
    except jsonschema.ValidationError:
        return
    raise AssertionError("a Hardware with interfaces: string validated")


def chart_crds_match():
    for name in os.listdir(os.path.join(ROOT, "deploy", "crds")):
        a = open(os.path.join(ROOT, "deploy", "crds", name)).read()
        b = open(os.path.join(CHART, "crds", name)).read()
        assert a == b, f"chart crds/{name} differs from deploy/crds (run deploy/helm/generate.py)"
        validate_k8s([yaml.safe_load(b)])


def generated_fresh():
    stale = []
    for path, text in generate.expected().items():
        if not os.path.exists(path) or open(path).read() != text:
            stale.append(os.path.relpath(path, ROOT))
    assert not stale, f"stale (run deploy/helm/generate.py): {stale}"


def renderer_strict():
    try:
        render_chart(CHART, {"boots": {"enabled": True}}, sets=["logLevel=debug"])
    except TemplateError as e:
        raise AssertionError(f"defaults do not render: {e}") from None
    import render as r

    root = {"Values": {"a": 1}, "Release": {}, "Chart": {}}
    for bad in ["{{ .Values.typo }}", "{{ include \"x\" . }}", "{{ if .Values.a }}x"]:
        try:
            r.Renderer(root, "t").render(bad, root)
        except TemplateError:
            continue
        raise AssertionError(f"renderer accepted {bad!r}")


def main():
    check("values documented (every leaf has '# --')", generate.values_doc, os.path.join(CHART, "values.yaml"))
    check("renderer rejects typos and unsupported syntax", renderer_strict)
    check("generated manifests/README/chart CRDs are fresh", generated_fresh)
    check("chart CRDs == deploy/crds and validate as CRDs", chart_crds_match)
    check("core/tests/fixtures validate against the CRD schemas", fixtures_validate)
    check("worker token key: generated on install, kept on upgrade (lookup)", worker_key_kept)
    for case, values in CASES.items():
        try:
            objs = render(values)
        except Exception as e:  # noqa: BLE001
            check(f"{case}: render", lambda e=e: (_ for _ in ()).throw(e))
            continue
        check(f"{case}: Kubernetes schemas (strict)", validate_k8s, objs)
        check(f"{case}: references, env, ports, security", cross_refs, objs, values)
        check(f"{case}: RBAC exactly as pinned", rbac_exact, objs, values)
        check(f"{case}: boots network mode", boots_shape, objs, values)
        check(f"{case}: leader election env", controllers, objs, values)
        check(f"{case}: tink-server and boots share one worker token key Secret", worker_key, objs, values)
        if bin_dir():
            check(f"{case}: env names are the binaries' ({bin_dir()})", env_names_accepted, objs, values)
        elif os.environ.get("CI") == "true":
            check(f"{case}: env names are the binaries'", lambda: (_ for _ in ()).throw(
                AssertionError("no built service binaries (cargo build; or set TINKERBELL_BIN_DIR)")))
        else:
            print(f"skip {case}: env names vs binaries (no built binaries; set TINKERBELL_BIN_DIR)")
        if case == "extras":
            check(f"{case}: extraEnv and resources", extras, objs, values)
    for name in ("tinkerbell.yaml", "bootstrap.yaml", "crds.yaml"):
        objs = [d for d in yaml.safe_load_all(open(os.path.join(ROOT, "deploy", "manifests", name))) if d]
        check(f"deploy/manifests/{name}: Kubernetes schemas", validate_k8s, objs)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
