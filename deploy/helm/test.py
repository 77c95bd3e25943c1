#!/usr/bin/env python3
"""Test of the Helm chart with real helm and a real kube-apiserver (run by scripts/test.sh:
`python3 deploy/helm/test.py`).

helm, kubectl, kube-apiserver and etcd are the pinned builds of tests/kube/kube.sh (or the
directory in $TINKERBELL_TEST_KUBE_BIN). Without them the helm part fails under CI=true and is
skipped otherwise. helm runs with its homes in a temporary directory and every call names its
kubeconfig: nothing of the user's (~/.kube, ~/.config/helm) is read or written.

- `helm lint --strict` for each values case, and every `.Values` path a template names is
  defined in values.yaml (helm itself renders an undefined value as nothing, even in lint);
- `helm template` of every way the chart is deployed (CASES), each object checked:
  cross-references (ServiceAccounts, selectors, targetPorts, roleRefs), the contract (Service
  ports 42113, 7171, 7172, 67/69/514 UDP; TINKERBELL_* env names; hostNetwork / relay switch;
  leader election and concurrency env; RBAC rules exactly as pinned below; non-root where
  possible; the worker token key Secret), and every env name is one its binary accepts (read
  from `<binary> --help` of the built binaries, TINKERBELL_BIN_DIR else target/debug or the
  static release dir; without them that check fails under CI=true and is skipped otherwise);
- a control plane (tests/kube/kube.sh up) accepts every case's objects and deploy/manifests
  (server-side dry run, strict field validation, no warnings but KNOWN_WARNINGS), and the
  example objects of core/tests/fixtures under the chart's CRDs;
- the release's life: `helm install` (CRDs Established; the objects helm's manifest lists are
  exactly those carrying the release's ownership annotations; the ServiceAccounts get exactly
  the pinned rules, asked of the API server's authorizer), `helm upgrade` (a value changes, the
  worker token key does not: the chart's `lookup`), a second release in another namespace with
  namespaced RBAC, `helm uninstall` (everything gone but the kept Secret and the CRDs) and a
  reinstall that keeps the key;
- the chart's CRDs equal deploy/crds; generated files (manifests, README values table) are
  fresh; every value is documented.

Prints 'N passed, N failed'; exit 1 on any failure. VERBOSE=1 prints tracebacks.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the tree
import generate  # noqa: E402

CHART = os.path.join(HERE, "tinkerbell")
CI = os.environ.get("CI") == "true"

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
LEASES = {("coordination.k8s.io", "leases"): R + ["create", "update", "patch", "delete"]}
SERVICE_PORTS = {
    "boots": {(67, "UDP"), (69, "UDP"), (514, "UDP"), (7171, "TCP")},
    "hegel": {(7172, "TCP")},
    "tink-server": {(42113, "TCP")},
}
LEADER = {"tink-controller": "TINK_CONTROLLER", "rufio": "RUFIO"}

# name -> values; every deployment shape the docs describe. Rendered as release "tinkerbell" in
# namespace "tinkerbell".
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
    """Run one check; report it and go on. Returns fn's result (True for None), None on failure."""
    global passed, failed
    start = time.monotonic()
    try:
        out = fn(*args)
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        failed += 1
        print(f"FAIL {name}: {e}", flush=True)
        if os.environ.get("VERBOSE"):
            traceback.print_exc()
        return None
    passed += 1
    print(f"ok   {name} ({time.monotonic() - start:.1f} s)", flush=True)
    return True if out is None else out


def fail(name, why):
    def raise_():
        raise AssertionError(why)
    check(name, raise_)


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def merged(key, values):
    defaults = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))[key]
    out = copy.deepcopy(defaults)
    out.update(values.get(key, {}))
    return out


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def comp(obj):
    return obj["metadata"]["labels"]["app.kubernetes.io/name"]


# ---- checks of rendered objects ------------------------------------------------------------

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
        v = merged({"tink-controller": "tinkController", "rufio": "rufio"}[c], values)
        env = {e["name"]: e["value"] for e in deps[f"tinkerbell-{c}"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env[f"TINKERBELL_{prefix}_ENABLE_LEADER_ELECTION"] == str(v["leaderElection"]).lower()
        assert env[f"TINKERBELL_{prefix}_LEADER_ELECTION_NAMESPACE"] == "tinkerbell"
        if c == "rufio":
            assert env["TINKERBELL_RUFIO_MAX_CONCURRENT"] == str(v["maxConcurrent"])


def worker_key(objs, values):
    """tink-server and boots mount one Secret as the worker token key file, and the chart
    creates that Secret (with a usable key) exactly when asked to."""
    w = merged("workerAuth", values)
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


def extras(objs, _values):
    c = by_kind(objs, "Deployment")["tinkerbell-hegel"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "TINKERBELL_X", "value": "1"} in c["env"]
    assert c["resources"] == {"limits": {"memory": "64Mi"}}


def namespaced_objects_say_where(objs, _values):
    """Every namespaced object names its namespace, so the plain manifests land where the chart
    would put them (kubectl apply -f would use the kubeconfig's namespace otherwise)."""
    cluster_kinds = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}
    missing = [f"{o['kind']}/{o['metadata']['name']}" for o in objs
               if o["kind"] not in cluster_kinds and not o["metadata"].get("namespace")]
    assert not missing, missing


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


# ---- checks without helm -------------------------------------------------------------------

def chart_crds_match():
    names = sorted(os.listdir(os.path.join(ROOT, "deploy", "crds")))
    assert names == sorted(os.listdir(os.path.join(CHART, "crds"))), "chart crds/ has other files"
    for name in names:
        a = open(os.path.join(ROOT, "deploy", "crds", name)).read()
        b = open(os.path.join(CHART, "crds", name)).read()
        assert a == b, f"chart crds/{name} differs from deploy/crds (run deploy/helm/generate.py)"


# ---- checks with helm alone ----------------------------------------------------------------

def lint(helm, values):
    r = helm.run("helm", "lint", "--strict", CHART, "--namespace", "tinkerbell",
                 "-f", helm.values_file(values), check=False)
    assert r.returncode == 0, (r.stdout + r.stderr).strip()


VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z0-9_]+)+)")


def undefined_values(templates):
    """The `.Values.a.b` paths the templates name that values.yaml does not define. helm renders
    an undefined value as nothing (`helm lint --strict` too: it fails on warnings, it does not
    render with missingkey=error), so a typo would otherwise pass unnoticed."""
    values = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))
    missing = set()
    for name, text in templates.items():
        for m in VALUES_REF.finditer(text):
            v = values
            for part in m.group(1).split(".")[1:]:
                if not isinstance(v, dict) or part not in v:
                    missing.add(f"{name}: .Values{m.group(1)}")
                    break
                v = v[part]
    return sorted(missing)


def values_defined():
    tdir = os.path.join(CHART, "templates")
    templates = {n: open(os.path.join(tdir, n)).read() for n in sorted(os.listdir(tdir))}
    assert sum(len(VALUES_REF.findall(t)) for t in templates.values()) > 50, "found no .Values references"
    missing = undefined_values(templates)
    assert not missing, f"not defined in values.yaml: {missing}"
    # The check finds a typo (it is not vacuous).
    typo = undefined_values({"t.yaml": "replicas: {{ .Values.hegel.replica }} {{ .Values.hegel.replicas }}"})
    assert typo == ["t.yaml: .Values.hegel.replica"], typo


def generated_fresh(helm):
    stale = []
    for path, text in generate.expected(helm).items():
        if not os.path.exists(path) or open(path).read() != text:
            stale.append(os.path.relpath(path, ROOT))
    assert not stale, f"stale (run deploy/helm/generate.py): {stale}"


def keys_random(helm):
    """Without a cluster (helm template, a first install) each render generates a new key."""
    def key():
        objs = docs(helm.template({"publicIP": "10.0.0.5"}))
        return base64.b64decode(by_kind(objs, "Secret")["tinkerbell-worker-token-key"]["data"]["key"]).decode()
    a, b = key(), key()
    assert a != b and len(a) == 64 and a.isalnum(), (a, b)


# ---- checks against the API server ---------------------------------------------------------

# Warnings the API server gives for our objects that are known and owned elsewhere (warning ->
# why). Any other warning fails the step that got it; an entry no step gets fails at the end,
# so the list cannot go stale.
KNOWN_WARNINGS = {}  # warning text -> why it is accepted; none today
seen_warnings = set()


def no_new_warnings(stderr):
    """The API server's warnings: kubectl prints `Warning: ...`; helm logs them through
    client-go's warning handler (`warnings.go:N] "Warning: ..."`; its other klog lines, such as
    a watch ending, are not the server's)."""
    got = set()
    for line in stderr.splitlines():
        i = line.find("Warning: ")
        if i == 0 or (i > 0 and "warnings.go:" in line[:i]):
            w = line[i + len("Warning: "):].rstrip().replace('\\"', '"')
            got.add(w[:-1] if line[:i].endswith('"') and w.endswith('"') else w)
    seen_warnings.update(got)
    new = sorted(got - KNOWN_WARNINGS.keys())
    assert not new, f"API server warnings: {new}"


def known_warnings_seen():
    stale = sorted(KNOWN_WARNINGS.keys() - seen_warnings)
    assert not stale, f"no longer warned, remove from KNOWN_WARNINGS: {stale}"


def dry_run(kube, text):
    """The API server's verdict on these objects: validation, strict fields, admission; and no
    warnings."""
    r = kube.run("kubectl", "apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=text)
    no_new_warnings(r.stderr)


def crds_established(kube):
    want = set()
    for name in os.listdir(os.path.join(CHART, "crds")):
        crd = yaml.safe_load(open(os.path.join(CHART, "crds", name)))
        want.add(crd["metadata"]["name"])
    got = {c["metadata"]["name"] for c in json.loads(kube.run("kubectl", "get", "crd", "-o", "json").stdout)["items"]}
    assert want <= got, f"CRDs missing: {want - got}"
    kube.run("kubectl", "wait", "--for=condition=Established", "--timeout=60s",
             *[f"crd/{n}" for n in sorted(want)])


FIXTURE_KINDS = {"Hardware", "Template", "Workflow", "Machine", "Job", "Task"}
# Parser edge-case fixtures the API server rejects under our CRDs (and the field it names).
EXPECTED_INVALID = {
    # interfaces[2].dhcp.mac is "" (tests that the store tolerates it); the CRD pattern
    # requires a MAC, so such an object can live in the embedded store but not in Kubernetes.
    "hardware_full.yaml": "mac",
}


def fixtures_accepted(kube):
    fdir = os.path.join(ROOT, "core", "tests", "fixtures")
    seen = set()
    for name in sorted(os.listdir(fdir)):
        if not name.endswith(".yaml"):
            continue
        for obj in yaml.safe_load_all(open(os.path.join(fdir, name))):
            if not obj or obj.get("kind") not in FIXTURE_KINDS:
                continue
            r = kube.run("kubectl", "create", "--dry-run=server", "--validate=strict", "-f", "-",
                         stdin=json.dumps(obj), check=False)
            if name in EXPECTED_INVALID:
                assert r.returncode != 0, f"{name} was accepted, but it was expected not to be"
                assert EXPECTED_INVALID[name] in r.stderr, f"{name}: {r.stderr.strip()}"
                continue
            assert r.returncode == 0, f"{name}: {r.stderr.strip()}"
            seen.add(obj["kind"])
    assert {"Hardware", "Machine", "Job", "Task"} <= seen, f"fixtures covered only {seen}"
    # A wrong type must fail (the validation is not vacuous).
    hw = docs(open(os.path.join(fdir, "hardware_eksa.yaml")).read())[0]
    hw["spec"]["interfaces"] = "not-a-list"
    r = kube.run("kubectl", "create", "--dry-run=server", "-f", "-", stdin=json.dumps(hw), check=False)
    assert r.returncode != 0 and "interfaces" in r.stderr, f"a Hardware with interfaces: string: {r.stdout}"


def obj_key(o):
    group = o["apiVersion"].rpartition("/")[0]
    return (f"{o['kind']}.{group}" if group else o["kind"], o["metadata"].get("namespace", ""),
            o["metadata"]["name"])


_listable = []


def owned_by(kube, release, ns):
    """Every object in the cluster, of every listable resource, that carries the release's
    ownership annotations."""
    if not _listable:
        out = kube.run("kubectl", "api-resources", "--verbs=list", "-o", "name").stdout.split()
        _listable.extend(r for r in out if r not in ("events", "events.events.k8s.io"))
    items = json.loads(kube.run("kubectl", "get", ",".join(_listable), "-A", "-o", "json").stdout)["items"]
    out = set()
    for o in items:
        a = o["metadata"].get("annotations") or {}
        if a.get("meta.helm.sh/release-name") == release and a.get("meta.helm.sh/release-namespace") == ns:
            labels = o["metadata"].get("labels") or {}
            assert labels.get("app.kubernetes.io/managed-by") == "Helm", f"{obj_key(o)}: no managed-by label"
            out.add(obj_key(o))
    return out


def existing(kube, objs):
    """Which of these objects (from a manifest) the API server has, asked one by one by name."""
    out = set()
    for o in objs:
        kind, ns, name = obj_key(o)
        ver = o["apiVersion"].rpartition("/")[2]
        group = kind.partition(".")[2]
        ref = f"{kind.partition('.')[0]}.{ver}.{group}/{name}" if group else f"{kind}/{name}"
        r = kube.run("kubectl", "get", ref, *(["-n", ns] if ns else []), "--ignore-not-found", "-o", "name")
        if r.stdout.strip():
            out.add(obj_key(o))
    return out


def manifest(kube, release, ns):
    return docs(kube.run("helm", "get", "manifest", release, "-n", ns).stdout)


def install_matches_manifest(kube, release, ns):
    objs = manifest(kube, release, ns)
    want = {obj_key(o) for o in objs}
    got = owned_by(kube, release, ns)
    assert want, "helm get manifest lists nothing"
    assert got == want, f"in the cluster, not in the manifest: {sorted(got - want)}; " \
                        f"in the manifest, not in the cluster: {sorted(want - got)}"
    return objs


def rules_of(kube, sa_ns, sa, ns):
    """{(group, resource): verbs} the authorizer grants the ServiceAccount in namespace ns, of
    the groups the chart grants (SelfSubjectRulesReview, impersonating the ServiceAccount)."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
              "spec": {"namespace": ns}}
    out = json.loads(kube.run("kubectl", "create", "--validate=false", "-o", "json", "-f", "-",
                              f"--as=system:serviceaccount:{sa_ns}:{sa}", stdin=json.dumps(review)).stdout)
    assert not out["status"].get("incomplete"), out["status"]
    got = {}
    for rule in out["status"].get("resourceRules", []):
        for g in rule.get("apiGroups", []):
            if g not in ("", "tinkerbell.org", "bmc.tinkerbell.org", "coordination.k8s.io"):
                continue
            for r in rule.get("resources", []):
                got.setdefault((g, r), set()).update(rule["verbs"])
    return {k: sorted(v) for k, v in got.items()}


def rbac_granted(kube, release, release_ns, watch_ns, components):
    """What the API server lets each ServiceAccount do is exactly the pinned rules in the watch
    namespace, and leases (leader election) in the release namespace."""
    for c in components:
        sa = f"{release}-{c}"
        want = {k: sorted(v) for k, v in RBAC[c].items()}
        lease = {k: sorted(v) for k, v in LEASES.items()} if c in LEADER else {}
        if watch_ns == release_ns:
            got = rules_of(kube, release_ns, sa, release_ns)
            assert got == {**want, **lease}, f"{c}: {got} != {({**want, **lease})}"
        else:
            got = rules_of(kube, release_ns, sa, watch_ns)
            assert got == want, f"{c} in {watch_ns}: {got} != {want}"
            got = rules_of(kube, release_ns, sa, release_ns)
            assert got == lease, f"{c} in {release_ns}: {got} != {lease}"


def secret_key(kube, ns, name="tinkerbell-worker-token-key"):
    s = json.loads(kube.run("kubectl", "get", "secret", name, "-n", ns, "-o", "json").stdout)
    return s["data"]


def env_of(kube, ns, deploy):
    d = json.loads(kube.run("kubectl", "get", "deploy", deploy, "-n", ns, "-o", "json").stdout)
    return {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}


def lifecycle(kube):
    """install, upgrade, a second release, uninstall, reinstall: each step's checks."""
    a_ns, b_ns, b_watch = "tb-a", "tb-b", "tb-b-watch"
    values_a = kube.values_file({"publicIP": "10.0.0.5"})
    components = ["boots", "hegel", "tink-server", "tink-controller", "rufio"]

    def install_a():
        r = kube.run("helm", "install", "tinkerbell", CHART, "-n", a_ns, "--create-namespace", "-f", values_a)
        no_new_warnings(r.stderr)
    if check("helm install (release tinkerbell in tb-a)", install_a) is None:
        return
    check("install: the chart's CRDs are created and Established", crds_established, kube)
    objs_a = check("install: objects with the release's annotations == helm get manifest",
                   install_matches_manifest, kube, "tinkerbell", a_ns)
    check("install: the ServiceAccounts get exactly the pinned rules (authorizer)",
          rbac_granted, kube, "tinkerbell", a_ns, a_ns, components)
    check("core/tests/fixtures: accepted under the installed CRDs (hardware_full: rejected, mac)",
          fixtures_accepted, kube)

    def generated_key():
        data = secret_key(kube, a_ns)
        key = base64.b64decode(data["key"]).decode()
        assert len(key) == 64 and key.isalnum(), f"key of {len(key)} characters"
        return data
    key_a = check("install: the worker token key Secret holds a new 64-character key", generated_key)

    def upgrade():
        r = kube.run("helm", "upgrade", "tinkerbell", CHART, "-n", a_ns, "-f", values_a, "--set", "logLevel=debug")
        no_new_warnings(r.stderr)
        assert env_of(kube, a_ns, "tinkerbell-tink-server")["TINKERBELL_LOG_LEVEL"] == "debug", "value not applied"
        st = json.loads(kube.run("helm", "status", "tinkerbell", "-n", a_ns, "-o", "json").stdout)
        assert st["version"] == 2 and st["info"]["status"] == "deployed", (st["version"], st["info"]["status"])
        assert secret_key(kube, a_ns) == key_a, "helm upgrade replaced the worker token key"
    if key_a:
        check("helm upgrade (logLevel=debug): applied, worker token key unchanged (lookup)", upgrade)

    def install_b():
        kube.run("kubectl", "create", "namespace", b_watch)
        r = kube.run("helm", "install", "tinkerbell", CHART, "-n", b_ns, "--create-namespace", "-f",
                     kube.values_file({"publicIP": "10.0.0.6", "rbac": {"scope": "namespace"},
                                       "watchNamespace": b_watch}))
        no_new_warnings(r.stderr)
        assert secret_key(kube, b_ns) != key_a, "two releases share a key"
    if check("helm install: a second release in tb-b, namespaced RBAC in tb-b-watch", install_b) is not None:
        check("second release: objects with its annotations == helm get manifest",
              install_matches_manifest, kube, "tinkerbell", b_ns)
        check("second release: exactly the pinned rules in tb-b-watch, leases in tb-b",
              rbac_granted, kube, "tinkerbell", b_ns, b_watch, components)

    def uninstall(ns, objs):
        there = existing(kube, objs)
        assert there == {obj_key(o) for o in objs}, f"missing before uninstall: {there}"
        kube.run("helm", "uninstall", "tinkerbell", "-n", ns)
        left = owned_by(kube, "tinkerbell", ns)
        keep = {obj_key(o) for o in objs if (o["metadata"].get("annotations") or {}).get(
            "helm.sh/resource-policy") == "keep"}
        assert keep == {("Secret", ns, "tinkerbell-worker-token-key")}, f"objects marked keep: {keep}"
        assert left == keep, f"left after uninstall: {sorted(left - keep)}; kept gone: {sorted(keep - left)}"
        left = existing(kube, objs)
        assert left == keep, f"left after uninstall (by name): {sorted(left - keep)}"
        r = kube.run("helm", "status", "tinkerbell", "-n", ns, check=False)
        assert r.returncode != 0, "helm status still finds the release"
    if objs_a:
        if check("helm uninstall (tb-a): every object gone but the kept worker token key Secret",
                 uninstall, a_ns, objs_a) is not None:
            check("after uninstall: the CRDs stay (helm never deletes crds/)", crds_established, kube)

            def reinstall():
                install_a()
                assert secret_key(kube, a_ns) == key_a, "a reinstall replaced the kept worker token key"
                install_matches_manifest(kube, "tinkerbell", a_ns)
            check("helm install again (tb-a): adopts the kept Secret, same key", reinstall)
            check("second release untouched by the first's uninstall",
                  install_matches_manifest, kube, "tinkerbell", b_ns)


# ---- main ----------------------------------------------------------------------------------

def run_helm_checks(bindir):
    with generate.Helm(bindir) as helm:
        print(f"helm: {helm.run('helm', 'version', '--short').stdout.strip()}")
        check("generated manifests/README/chart CRDs are fresh", generated_fresh, helm)
        check("worker token key: a new random key per render without a cluster", keys_random, helm)
        rendered = {}
        for case, values in CASES.items():
            check(f"{case}: helm lint --strict", lint, helm, values)
            objs = check(f"{case}: helm template", lambda v=values: docs(helm.template(v)))
            if objs is None:
                continue
            rendered[case] = objs
            check(f"{case}: references, env, ports, security", cross_refs, objs, values)
            check(f"{case}: RBAC exactly as pinned", rbac_exact, objs, values)
            check(f"{case}: boots network mode", boots_shape, objs, values)
            check(f"{case}: leader election env", controllers, objs, values)
            check(f"{case}: tink-server and boots share one worker token key Secret", worker_key, objs, values)
            check(f"{case}: namespaced objects name their namespace", namespaced_objects_say_where, objs, values)
            if bin_dir():
                check(f"{case}: env names are the binaries' ({bin_dir()})", env_names_accepted, objs, values)
            elif CI:
                fail(f"{case}: env names are the binaries'", "no built service binaries "
                     "(cargo build; or set TINKERBELL_BIN_DIR)")
            else:
                print(f"skip {case}: env names vs binaries (no built binaries; set TINKERBELL_BIN_DIR)")
            if case == "extras":
                check(f"{case}: extraEnv and resources", extras, objs, values)

    state = tempfile.mkdtemp(prefix="tinkerbell-helm-test.")
    kube_sh = generate.KUBE_SH
    try:
        up = subprocess.run([kube_sh, "up", state], capture_output=True, text=True, timeout=600)
        if up.returncode != 0:
            fail("tests/kube/kube.sh up", (up.stderr or up.stdout).strip())
            return
        print(up.stdout.strip())
        with generate.Helm(bindir, kubeconfig=os.path.join(state, "kubeconfig")) as kube:
            v = json.loads(kube.run("kubectl", "version", "-o", "json").stdout)
            print(f"kube-apiserver: {v['serverVersion']['gitVersion']}")
            for ns in ("tinkerbell", "eksa-system", "tink-system"):
                kube.run("kubectl", "create", "namespace", ns)
            for case, objs in rendered.items():
                text = "---\n".join(yaml.safe_dump(o) for o in objs)
                check(f"{case}: the API server accepts every object (dry run, strict fields)", dry_run, kube, text)
            for name in ("crds.yaml", "tinkerbell.yaml", "bootstrap.yaml"):
                text = open(os.path.join(ROOT, "deploy", "manifests", name)).read()
                check(f"deploy/manifests/{name}: the API server accepts every object", dry_run, kube, text)
                if name != "crds.yaml":
                    check(f"deploy/manifests/{name}: namespaced objects name their namespace",
                          namespaced_objects_say_where, docs(text), {})
            lifecycle(kube)
            check("every warning in KNOWN_WARNINGS still happens", known_warnings_seen)
    finally:
        if failed and os.path.isdir(state):
            logs = tempfile.mkdtemp(prefix="tinkerbell-helm-test-logs.")
            for f in ("apiserver.log", "etcd.log"):
                if os.path.exists(os.path.join(state, f)):
                    shutil.copy(os.path.join(state, f), logs)
            print(f"control plane logs kept in {logs}")
        subprocess.run([kube_sh, "down", state], capture_output=True, timeout=120)


def main():
    # SIGTERM (a CI timeout) unwinds like an exception, so the control plane is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start = time.monotonic()
    check("values documented (every leaf has '# --')", generate.values_doc, os.path.join(CHART, "values.yaml"))
    check("chart crds/ == deploy/crds", chart_crds_match)
    check("every .Values path the templates name is defined in values.yaml", values_defined)
    try:
        bindir = generate.kube_bin()
    except (generate.ToolsUnavailable, OSError, subprocess.TimeoutExpired) as e:
        if CI:
            fail("helm and a control plane (tests/kube/kube.sh)", str(e))
        else:
            print(f"SKIP helm lint/template/install checks: {e}")
    else:
        run_helm_checks(bindir)
    print(f"{time.monotonic() - start:.0f} s")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
