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
  the deployment modes (allInOne: one `tinkerbell serve` Deployment, its RBAC the union of the
  services'; boots as a DaemonSet; HookOS as an image volume or fetched by an init container,
  whose arguments are run with the built `tinkerbell`; kube-vip as upstream's) and the values
  the chart refuses;
- a control plane (tests/kube/kube.sh up) accepts every case's objects and deploy/manifests
  (server-side dry run, strict field validation, no warnings but KNOWN_WARNINGS), and the
  example objects of core/tests/fixtures under the chart's CRDs;
- the release's life: `helm install` (CRDs Established; the objects helm's manifest lists are
  exactly those carrying the release's ownership annotations; the ServiceAccounts get exactly
  the pinned rules, asked of the API server's authorizer), `helm upgrade` (a value changes, the
  worker token key does not: the chart's `lookup`), a second release in another namespace with
  namespaced RBAC, `helm uninstall` (everything gone but the kept Secret and the CRDs) and a
  reinstall that keeps the key; each deployment mode installed and uninstalled as its own
  release (the all-in-one's ServiceAccount gets exactly the union, and the built `tinkerbell
  serve` runs with its token without an RBAC refusal; the API server keeps the image volume);
- the chart's CRDs equal deploy/crds; generated files (manifests, README values table) are
  fresh; every value is documented.

Prints 'N passed, N failed'; exit 1 on any failure. VERBOSE=1 prints tracebacks.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
# deployment.mode=allInOne: one ServiceAccount for `tinkerbell serve`, the union of the five
# above (asserted below) plus reading WorkflowRuleSets: serve's kube backend lists every kind it
# stores before it starts (core/src/store/kube.rs, Preflight). No Leases: serve has no leader
# election.
RBAC["tinkerbell"] = {
    ("tinkerbell.org", "hardware"): R + ["update", "patch"],
    ("tinkerbell.org", "templates"): R,
    ("tinkerbell.org", "workflows"): R + ["update", "patch"],
    ("tinkerbell.org", "workflows/status"): ["get", "update", "patch"],
    ("tinkerbell.org", "workflowrulesets"): R,
    ("bmc.tinkerbell.org", "machines"): R + ["update", "patch"],
    ("bmc.tinkerbell.org", "jobs"): R + ["create", "update", "patch", "delete"],
    ("bmc.tinkerbell.org", "tasks"): R + ["create", "update", "patch", "delete"],
    ("bmc.tinkerbell.org", "machines/status"): ["get", "update", "patch"],
    ("bmc.tinkerbell.org", "jobs/status"): ["get", "update", "patch"],
    ("bmc.tinkerbell.org", "tasks/status"): ["get", "update", "patch"],
    ("", "secrets"): R,
    ("", "events"): ["create", "patch"],
}
SERVICES = ("boots", "hegel", "tink-server", "tink-controller", "rufio")
# kube-vip's ClusterRole (optional.kubevip), as kube-vip.io's manifest and upstream's chart.
KUBEVIP_RBAC = {
    ("", "services/status"): ["update"],
    ("", "services"): ["list", "get", "watch", "update"],
    ("", "endpoints"): ["list", "get", "watch", "update"],
    ("discovery.k8s.io", "endpointslices"): ["list", "get", "watch", "update"],
    ("", "nodes"): ["list", "get", "watch", "update", "patch"],
    ("coordination.k8s.io", "leases"): ["list", "get", "watch", "update", "create"],
    ("", "pods"): ["list"],
}
LEASES = {("coordination.k8s.io", "leases"): R + ["create", "update", "patch", "delete"]}
HOOKOS_DIR = "/var/lib/tinkerbell/hookos"
SERVICE_PORTS = {
    "boots": {(67, "UDP"), (69, "UDP"), (514, "UDP"), (7171, "TCP")},
    "hegel": {(7172, "TCP")},
    "tink-server": {(42113, "TCP")},
    # allInOne with every service (service_ports() drops what a case turns off).
    "tinkerbell": {(67, "UDP"), (69, "UDP"), (514, "UDP"), (7080, "TCP"), (42113, "TCP")},
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
    # The deployment modes (deploy/helm/tinkerbell/README.md, "Deployment modes").
    "all-in-one": {"publicIP": "10.0.0.5", "deployment": {"mode": "allInOne"},
                   "service": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.5"},
                   "optional": {"hookos": {"enabled": True}}},
    "all-in-one-host-network": {
        "publicIP": "10.0.0.5", "deployment": {"mode": "allInOne", "nodeSelector": {"tinkerbell.org/netboot": "true"},
                                               "additionalEnvs": [{"name": "TINKERBELL_X", "value": "1"}]},
        "boots": {"hostNetwork": True}, "hegel": {"enabled": False}, "rufio": {"enabled": False},
        "rbac": {"scope": "namespace"}, "watchNamespace": "eksa-system",
        "optional": {"hookos": {"enabled": True, "source": "url", "downloadURL": "http://10.0.0.1/hookos/v1"}},
    },
    "boots-daemonset": {
        "publicIP": "10.0.0.5",
        "boots": {"daemonSet": {"enabled": True}, "hostNetwork": True,
                  "nodeSelector": {"tinkerbell.org/netboot": "true"},
                  "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                                   "effect": "NoSchedule"}]},
    },
    "hookos-image": {"publicIP": "10.0.0.5", "optional": {"hookos": {"enabled": True}}},
    "hookos-url": {"publicIP": "10.0.0.5",
                   "boots": {"dhcpRelay": {"enabled": True, "interface": "eno1", "address": "10.0.0.5/24"}},
                   "optional": {"hookos": {"enabled": True, "source": "url",
                                           "downloadURL": "http://10.0.0.1/hookos/v1"}}},
    "kube-vip": {"publicIP": "10.0.0.5",
                 "service": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.5",
                             "loadBalancerClass": "kube-vip.io/kube-vip-class"},
                 "optional": {"kubevip": {"enabled": True, "interface": "eno1",
                                          "additionalEnv": [{"name": "vip_leaseduration", "value": "15"}]}}},
}
# Values the chart refuses to render, and what its message says.
REFUSED = {
    "mode typo": ({"deployment": {"mode": "allinone"}}, "deployment.mode"),
    "all-in-one as a DaemonSet": ({"deployment": {"mode": "allInOne"}, "boots": {"daemonSet": {"enabled": True}}},
                                  "no leader election"),
    "hookos url without downloadURL": ({"optional": {"hookos": {"enabled": True, "source": "url"}}},
                                       "optional.hookos.downloadURL"),
    "hookos without boots": ({"boots": {"enabled": False}, "optional": {"hookos": {"enabled": True}}},
                             "needs boots.enabled"),
    "hookos source typo": ({"optional": {"hookos": {"enabled": True, "source": "oci"}}}, "image or url"),
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


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_defaults = []


def effective(values):
    """values.yaml with the case's values merged in (what the templates see)."""
    if not _defaults:
        _defaults.append(yaml.safe_load(open(os.path.join(CHART, "values.yaml"))))
    return deep_merge(_defaults[0], values)


def merged(key, values):
    return effective(values)[key]


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def comp(obj):
    return (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/name")


def workloads(objs):
    """Deployments and DaemonSets, by name."""
    return {o["metadata"]["name"]: o for o in objs if o["kind"] in ("Deployment", "DaemonSet")}


def ours(objs):
    """The workloads running our binaries (everything but kube-vip)."""
    return {n: w for n, w in workloads(objs).items() if comp(w) != "kube-vip"}


def pod(w):
    return w["spec"]["template"]["spec"]


def all_in_one(values):
    return effective(values)["deployment"]["mode"] == "allInOne"


def machines_pod(objs, values):
    """The workload that faces the machines (DHCP, TFTP, iPXE HTTP, HookOS): boots, or the
    all-in-one; None without one."""
    return ours(objs).get("tinkerbell-tinkerbell" if all_in_one(values) else "tinkerbell-boots")


def service_ports(component, values):
    v = effective(values)
    if component != "tinkerbell":
        return SERVICE_PORTS[component]
    want = set(SERVICE_PORTS["tinkerbell"])
    if not v["boots"]["enabled"]:
        want -= {(67, "UDP"), (69, "UDP"), (514, "UDP")}
    if not v["tinkServer"]["enabled"]:
        want -= {(42113, "TCP")}
    return want


# ---- checks of rendered objects ------------------------------------------------------------

def cross_refs(objs, values):
    sas = by_kind(objs, "ServiceAccount")
    deps = workloads(objs)
    roles = {(o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] in ("Role", "ClusterRole")}
    for name, d in deps.items():
        spec = pod(d)
        assert spec["serviceAccountName"] in sas, f"{name}: no ServiceAccount {spec['serviceAccountName']}"
        sel = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in sel.items()), f"{name}: selector does not match"
        if comp(d) == "kube-vip":
            continue  # kubevip_shape
        c = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        for e in env:
            assert e.startswith("TINKERBELL_") or e == "HEGEL_HTTP_ADDR", f"{name}: env {e}"
        assert env["TINKERBELL_BACKEND"] == "kube"
        assert env["TINKERBELL_BACKEND_KUBE_NAMESPACE"] == values.get("watchNamespace", "")
        # Each workload runs its own binary's image: <repository>/<component>:<appVersion>.
        assert c["image"] == f"tinkerbell-rs/{comp(d)}:0.1.0", f"{name}: image {c['image']}"
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        if comp(d) not in ("boots", "tinkerbell"):
            assert sc["runAsNonRoot"] is True and sc["capabilities"]["drop"] == ["ALL"], name
        else:
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sorted(sc["capabilities"]["add"]) == ["NET_BIND_SERVICE", "NET_RAW"]
        for ic in spec.get("initContainers", []):
            if ic["image"].startswith("tinkerbell-rs/"):  # ours (the macvlan one is privileged by design)
                isc = ic["securityContext"]
                assert isc["runAsNonRoot"] is True and isc["capabilities"]["drop"] == ["ALL"], ic["name"]
                assert isc["allowPrivilegeEscalation"] is False and isc["readOnlyRootFilesystem"] is True
        # Every mount names a volume of the pod, and every volume is mounted somewhere.
        vols = {v["name"] for v in spec.get("volumes", [])}
        mounted = set()
        for ct in spec["containers"] + spec.get("initContainers", []):
            for m in ct.get("volumeMounts", []):
                assert m["name"] in vols, f"{name}/{ct['name']}: mounts {m['name']}, not a volume"
                mounted.add(m["name"])
        assert mounted == vols, f"{name}: volumes {sorted(vols - mounted)} mounted nowhere"
    for name, s in by_kind(objs, "Service").items():
        sel = s["spec"]["selector"]
        targets = [d for d in deps.values()
                   if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} workloads"
        cports = {p["name"] for p in pod(targets[0])["containers"][0]["ports"]}
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in cports, f"Service {name}: targetPort {p['targetPort']} not a container port"
        got = {(p["port"], p["protocol"]) for p in s["spec"]["ports"]}
        assert got == service_ports(comp(s), values), f"Service {name}: ports {got}"
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


def rules_table(role, who):
    got = {}
    for rule in role["rules"]:
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                assert (g, r) not in got, f"{who}: {g}/{r} twice"
                got[(g, r)] = sorted(rule["verbs"])
    return got


def rbac_exact(objs, values):
    # The all-in-one's rules are the union of the services' (plus the preflight's read of
    # WorkflowRuleSets): a rule a service gains must reach the all-in-one too.
    union = {}
    for c in SERVICES:
        for k, verbs in RBAC[c].items():
            union.setdefault(k, set()).update(verbs)
    union[("tinkerbell.org", "workflowrulesets")] = set(R)
    assert {k: sorted(v) for k, v in union.items()} == {k: sorted(v) for k, v in RBAC["tinkerbell"].items()}, \
        "RBAC['tinkerbell'] is not the union of the services' rules"
    scope_kind = "ClusterRole" if values.get("rbac", {}).get("scope", "cluster") == "cluster" else "Role"
    enabled = {comp(d) for d in ours(objs).values()}
    if all_in_one(values):
        assert enabled == {"tinkerbell"}, enabled
    for c in enabled:
        role = [o for o in objs if o["kind"] == scope_kind and o["metadata"]["name"] == f"tinkerbell-{c}"]
        assert len(role) == 1, f"{c}: {scope_kind} missing"
        if scope_kind == "Role":
            assert role[0]["metadata"]["namespace"] == values["watchNamespace"]
        got = rules_table(role[0], c)
        want = {k: sorted(v) for k, v in RBAC[c].items()}
        assert got == want, f"{c}: rules {got} != pinned {want}"
        lease = [o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == f"tinkerbell-{c}-leader-election"]
        if c in LEADER:
            assert lease and lease[0]["rules"][0]["resources"] == ["leases"], f"{c}: no lease Role"
        else:
            assert not lease, f"{c}: has a lease Role it does not need"
    ours_roles = {o["metadata"]["name"] for o in objs if o["kind"] in ("Role", "ClusterRole")
                  and comp(o) != "kube-vip"}
    want_roles = {f"tinkerbell-{c}" for c in enabled} | {f"tinkerbell-{c}-leader-election" for c in enabled & LEADER.keys()}
    assert ours_roles == want_roles, f"roles {sorted(ours_roles)} != {sorted(want_roles)}"
    for o in objs:  # nobody may write secrets
        for rule in o.get("rules", []):
            if "secrets" in rule["resources"]:
                assert set(rule["verbs"]) <= set(R), f"{o['metadata']['name']}: writes secrets"


def boots_shape(objs, values):
    v = effective(values)
    b = v["boots"]
    d = machines_pod(objs, values)
    if not all_in_one(values) and b["enabled"] is False:
        assert d is None and "tinkerbell-boots" not in by_kind(objs, "Service")
        return
    assert d is not None, "no workload serves the machines"
    # A DaemonSet exactly when asked for (never the all-in-one: no leader election).
    want_kind = "DaemonSet" if b["daemonSet"]["enabled"] else "Deployment"
    assert d["kind"] == want_kind, f"{d['metadata']['name']} is a {d['kind']}, want {want_kind}"
    assert ("replicas" in d["spec"]) == (want_kind == "Deployment")
    spec = pod(d)
    sched = v["deployment"] if all_in_one(values) else b
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert spec.get(key, type(sched[key])()) == sched[key], f"{key}: {spec.get(key)} != {sched[key]}"
    assert spec.get("hostNetwork", False) == b["hostNetwork"]
    if b["hostNetwork"]:
        assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    relay = b["dhcpRelay"]["enabled"]
    inits = {c["name"]: c for c in spec.get("initContainers", [])}
    assert ("macvlan" in inits) == relay and spec.get("hostPID", False) == relay
    if relay:
        script = inits["macvlan"]["command"][-1]
        assert f"link {b['dhcpRelay']['interface']} type macvlan" in script, script
        assert f"ip addr add {b['dhcpRelay']['address']} dev tb-dhcp0" in script
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["TINKERBELL_PUBLIC_IPV4"] == values["publicIP"]
    assert env["TINKERBELL_IPXE_SCRIPT_TINK_SERVER_ADDR_PORT"] == f"{values['publicIP']}:42113"
    assert env["TINKERBELL_DHCP_MODE"] == "reservation"
    if all_in_one(values):
        # serve's DHCP, TFTP and syslog are off unless turned on.
        on = str(b["enabled"]).lower()
        assert env["TINKERBELL_DHCP_ENABLED"] == str(b["enabled"] and b["dhcpEnabled"]).lower()
        assert env["TINKERBELL_TFTP_SERVER_ENABLED"] == on and env["TINKERBELL_SYSLOG_ENABLED"] == on


def controllers(objs, values):
    deps = ours(objs)
    v = effective(values)
    if all_in_one(values):
        env = {e["name"]: e["value"] for e in pod(deps["tinkerbell-tinkerbell"])["containers"][0]["env"]}
        for key, name in (("hegel", "TOOTLES"), ("tinkServer", "TINK_SERVER"),
                          ("tinkController", "TINK_CONTROLLER"), ("rufio", "RUFIO_CONTROLLER")):
            assert env[f"TINKERBELL_ENABLE_{name}"] == str(v[key]["enabled"]).lower(), name
        return
    for c, prefix in LEADER.items():
        cv = v[{"tink-controller": "tinkController", "rufio": "rufio"}[c]]
        env = {e["name"]: e["value"] for e in pod(deps[f"tinkerbell-{c}"])["containers"][0]["env"]}
        assert env[f"TINKERBELL_{prefix}_ENABLE_LEADER_ELECTION"] == str(cv["leaderElection"]).lower()
        assert env[f"TINKERBELL_{prefix}_LEADER_ELECTION_NAMESPACE"] == "tinkerbell"
        if c == "rufio":
            assert env["TINKERBELL_RUFIO_MAX_CONCURRENT"] == str(cv["maxConcurrent"])


def worker_key(objs, values):
    """tink-server and boots (or the all-in-one `tinkerbell serve`) mount one Secret as the
    worker token key file, and the chart creates that Secret (with a usable key) exactly when
    asked to."""
    w = merged("workerAuth", values)
    users = [d for d in ours(objs).values() if comp(d) in ("tink-server", "boots", "tinkerbell")]
    assert users, "neither tink-server nor boots (nor the all-in-one) rendered"
    mounted = set()
    for d in users:
        spec = pod(d)
        c = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        if comp(d) in ("tink-server", "tinkerbell"):
            assert env["TINKERBELL_TINK_SERVER_WORKER_AUTH"] == str(w["enabled"]).lower()
        if not w["enabled"]:
            assert "TINKERBELL_WORKER_TOKEN_KEY_FILE" not in env, comp(d)
            assert not any("secret" in v for v in spec.get("volumes", [])), comp(d)
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
    assert mounted == {w["secretName"]}, f"the key's users mount {mounted}, want {w['secretName']}"
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


def all_in_one_shape(objs, values):
    """allInOne: one Deployment running `tinkerbell serve` (one replica, Recreate), nothing of
    the per-service workloads; perService: no all-in-one."""
    names = set(ours(objs))
    if not all_in_one(values):
        assert "tinkerbell-tinkerbell" not in names and not any(
            comp(o) == "tinkerbell" for o in objs), "all-in-one objects rendered"
        return
    assert names == {"tinkerbell-tinkerbell"}, f"workloads {sorted(names)}"
    d = ours(objs)["tinkerbell-tinkerbell"]
    assert d["kind"] == "Deployment" and d["spec"]["replicas"] == 1, (d["kind"], d["spec"].get("replicas"))
    assert d["spec"]["strategy"] == {"type": "Recreate"}, "two serve pods would run the controllers twice"
    spec = pod(d)
    assert spec["serviceAccountName"] == "tinkerbell-tinkerbell"
    c = spec["containers"][0]
    assert c["name"] == "tinkerbell" and c["args"] == ["serve"] and "command" not in c, (c["name"], c.get("args"))
    env = {e["name"]: e.get("value") for e in c["env"]}
    v = effective(values)
    assert env["TINKERBELL_HTTP_PORT"] == str(v["ports"]["http"])
    assert env["TINKERBELL_TINK_SERVER_BIND_PORT"] == str(v["ports"]["grpc"])
    # serve writes its tokens into the data directory: a writable volume there.
    data = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}.get(env["TINKERBELL_DATA_DIR"])
    assert data and "emptyDir" in {x["name"]: x for x in spec["volumes"]}[data], "data dir not an emptyDir"
    for e in v["deployment"]["additionalEnvs"]:
        assert e in c["env"], e
    assert c["resources"] == v["deployment"]["resources"]
    kinds = sorted(o["kind"] for o in objs if comp(o) != "kube-vip")
    want = ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    if v["rbac"]["scope"] != "cluster":
        want = ["Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    if v["workerAuth"]["enabled"] and v["workerAuth"]["create"]:
        want = sorted(want + ["Secret"])  # the worker token key (worker_key checks it)
    assert kinds == want, kinds


def hookos_shape(objs, values):
    """optional.hookos: the pod that serves the machines mounts HookOS at TINKERBELL_HOOKOS_DIR
    from the hookos image (an image volume) or from an emptyDir the `hookos` init container
    fills with `tinkerbell hookos fetch`; no other pod has anything of it."""
    h = effective(values)["optional"]["hookos"]
    target = machines_pod(objs, values)
    for name, w in workloads(objs).items():
        spec = pod(w)
        env = {e["name"] for c in spec["containers"] for e in c.get("env", [])}
        has = ({v["name"] for v in spec.get("volumes", [])} & {"hookos"}
               or {c["name"] for c in spec.get("initContainers", [])} & {"hookos"}
               or "TINKERBELL_HOOKOS_DIR" in env)
        if w is not target or not h["enabled"]:
            assert not has, f"{name} has HookOS bits"
    if not h["enabled"]:
        return
    spec = pod(target)
    c = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TINKERBELL_HOOKOS_DIR"] == HOOKOS_DIR
    assert "TINKERBELL_IPXE_HTTP_SCRIPT_OSIE_URL" not in env, "an OSIE URL would override the served HookOS"
    mount = {m["name"]: m for m in c["volumeMounts"]}["hookos"]
    assert mount["mountPath"] == env["TINKERBELL_HOOKOS_DIR"] and mount["readOnly"] is True, mount
    vol = {v["name"]: v for v in spec["volumes"]}["hookos"]
    inits = {i["name"]: i for i in spec.get("initContainers", [])}
    if h["source"] == "image":
        assert set(vol) == {"name", "image"}, vol
        assert vol["image"] == {"reference": h["image"] or "tinkerbell-rs/hookos:0.1.0",
                                "pullPolicy": h["pullPolicy"]}, vol
        assert "hookos" not in inits
    else:
        assert vol == {"name": "hookos", "emptyDir": {}}, vol
        i = inits["hookos"]
        assert i["image"] == "tinkerbell-rs/tinkerbell:0.1.0" and "command" not in i, i["image"]
        assert i["args"] == ["hookos", "fetch", "--url", h["downloadURL"], "--dir", HOOKOS_DIR], i["args"]
        imount = {m["name"]: m for m in i["volumeMounts"]}["hookos"]
        assert imount["mountPath"] == HOOKOS_DIR and not imount.get("readOnly"), imount


def kubevip_shape(objs, values):
    """optional.kubevip as upstream's: a host-network DaemonSet, `manager`, the ARP/services
    env, NET_ADMIN and NET_RAW, and exactly kube-vip's ClusterRole."""
    kv = effective(values)["optional"]["kubevip"]
    mine = [o for o in objs if comp(o) == "kube-vip"]
    if not kv["enabled"]:
        assert not mine, [o["metadata"]["name"] for o in mine]
        return
    assert sorted((o["kind"], o["metadata"]["name"]) for o in mine) == sorted([
        ("DaemonSet", kv["name"]), ("ServiceAccount", kv["name"]), ("ClusterRole", kv["roleName"]),
        ("ClusterRoleBinding", kv["roleBindingName"])]), [(o["kind"], o["metadata"]["name"]) for o in mine]
    ds = by_kind(objs, "DaemonSet")[kv["name"]]
    spec = pod(ds)
    assert spec["hostNetwork"] is True and spec["serviceAccountName"] == kv["name"]
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert spec.get(key, type(kv[key])()) == kv[key], key
    c = spec["containers"][0]
    assert c["image"] == kv["image"] == "ghcr.io/kube-vip/kube-vip:v1.0.0" and c["imagePullPolicy"] == kv["imagePullPolicy"]
    assert c["args"] == ["manager"], c["args"]
    assert sorted(c["securityContext"]["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    want = [{"name": n, "value": "true"} for n in ("vip_arp", "svc_enable", "svc_election", "enableServicesElection")]
    if kv["interface"]:
        want.append({"name": "vip_interface", "value": kv["interface"]})
    assert c["env"] == want + kv["additionalEnv"], c["env"]
    role = by_kind(objs, "ClusterRole")[kv["roleName"]]
    got = rules_table(role, "kube-vip")
    assert got == {k: sorted(v) for k, v in KUBEVIP_RBAC.items()}, got
    b = by_kind(objs, "ClusterRoleBinding")[kv["roleBindingName"]]
    assert b["roleRef"]["name"] == kv["roleName"]
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": kv["name"], "namespace": "tinkerbell"}], b["subjects"]


def refused(helm, values, message):
    r = helm.run("helm", "template", "tinkerbell", CHART, "--namespace", "tinkerbell",
                 "-f", helm.values_file(values), check=False)
    assert r.returncode != 0, "rendered"
    assert message in r.stderr, r.stderr.strip()


def hookos_fetch_runs(helm):
    """The url-mode init container's arguments, run with the built `tinkerbell`, install HookOS
    from a release URL (served here by a local HTTP server)."""
    src, dst = tempfile.mkdtemp(prefix="hookos-src."), tempfile.mkdtemp(prefix="hookos-dst.")
    try:
        sums = []
        for name, body in (("vmlinuz-x86_64", b"kernel"), ("initramfs-x86_64", b"initrd"), ("manifest.txt", b"m")):
            open(os.path.join(src, name), "wb").write(body)
            sums.append(f"{hashlib.sha256(body).hexdigest()}  {name}\n")
        open(os.path.join(src, "SHA256SUMS"), "w").write("".join(sums))
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *_args):
                pass
        handler = functools.partial(Quiet, directory=src)
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
            os.mkdir(os.path.join(src, "v1"))
            for n in os.listdir(src):
                if n != "v1":
                    os.link(os.path.join(src, n), os.path.join(src, "v1", n))
            objs = docs(helm.template({"publicIP": "10.0.0.5", "optional": {"hookos": {
                "enabled": True, "source": "url", "downloadURL": url}}}))
            init = {i["name"]: i for i in pod(ours(objs)["tinkerbell-boots"])["initContainers"]}["hookos"]
            args = [dst if a == HOOKOS_DIR else a for a in init["args"]]
            r = subprocess.run([os.path.join(bin_dir(), "tinkerbell"), *args], env={},
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, f"tinkerbell {' '.join(args)}: {r.stderr.strip()}"
        finally:
            httpd.shutdown()
        got = sorted(n for n in os.listdir(dst) if not n.startswith("."))
        assert got == ["SHA256SUMS", "initramfs-x86_64", "manifest.txt", "vmlinuz-x86_64"], got
        assert open(os.path.join(dst, "vmlinuz-x86_64"), "rb").read() == b"kernel"
    finally:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(dst, ignore_errors=True)


def namespaced_objects_say_where(objs, _values):
    """Every namespaced object names its namespace, so the plain manifests land where the chart
    would put them (kubectl apply -f would use the kubeconfig's namespace otherwise)."""
    cluster_kinds = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}
    missing = [f"{o['kind']}/{o['metadata']['name']}" for o in objs
               if o["kind"] not in cluster_kinds and not o["metadata"].get("namespace")]
    assert not missing, missing


# Our binaries (each image `tinkerbell-rs/<binary>` runs `/usr/bin/<binary>`).
BINARIES = {"boots", "hegel", "tink-server", "tink-controller", "rufio", "tinkerbell"}
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
        if d and all(os.access(os.path.join(d, b), os.X_OK) for b in BINARIES):
            return d
    return None


def accepted(binary, sub=()):
    """(env names, long options) that `<binary> [sub...] --help` lists (run with an empty
    environment, so no values)."""
    key = (binary, *sub)
    if key not in _accepted:
        out = subprocess.run([os.path.join(bin_dir(), binary), *sub, "--help"], env={},
                             capture_output=True, text=True, check=True, timeout=30).stdout
        _accepted[key] = (set(re.findall(r"\[env: ([A-Za-z0-9_]+)", out)),
                          set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z0-9-]+)", out)))
        assert _accepted[key][1], f"{' '.join(key)} --help lists no options"
    return _accepted[key]


def env_names_accepted(objs, values):
    """Every env name (and option) a container of ours gets from the chart is one its binary
    reads: the binary is the image's name (the all-in-one and the HookOS init container run
    `tinkerbell`), with the subcommand its args name (`serve`, `hookos fetch`)."""
    wrong = []
    for w in ours(objs).values():
        spec = pod(w)
        for c in spec["containers"] + spec.get("initContainers", []):
            if not c["image"].startswith("tinkerbell-rs/"):
                continue  # the macvlan init container: a shell script
            binary = c["image"].split("/", 1)[1].split(":")[0]
            assert binary in BINARIES, f"{c['name']}: image {c['image']} is not one of our binaries"
            args = c.get("args", [])
            sub = tuple(a for a in args[:next((i for i, a in enumerate(args) if a.startswith("-")), len(args))])
            ok, options = accepted(binary, sub)
            if binary != "tinkerbell":
                assert not args, f"{c['name']}: args {args}"
            else:
                assert sub in (("serve",), ("hookos", "fetch")), f"{c['name']}: tinkerbell {' '.join(sub)}"
            for a in args[len(sub):]:
                if a.startswith("--") and a not in options:
                    wrong.append(f"{c['name']}: {a} is not an option of {binary} {' '.join(sub)}")
            if binary == "tinkerbell" and sub == ("serve",):
                extra = {e["name"] for e in effective(values)["deployment"]["additionalEnvs"]}
            else:
                key = {"tink-server": "tinkServer", "tink-controller": "tinkController"}.get(c["name"], c["name"])
                extra = {e["name"] for e in values.get(key, {}).get("extraEnv", [])}
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
                    wrong.append(f"{c['name']}: {name} is not a {binary} {' '.join(sub)} env name".replace("  ", " "))
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
    """Which of these objects (from a manifest) the API server has, asked by name (one kubectl
    call per namespace)."""
    refs = {}
    for o in objs:
        kind, ns, name = obj_key(o)
        ver = o["apiVersion"].rpartition("/")[2]
        group = kind.partition(".")[2]
        refs.setdefault(ns, []).append(f"{kind.partition('.')[0]}.{ver}.{group}/{name}" if group else f"{kind}/{name}")
    out = set()
    for ns, names in refs.items():
        r = kube.run("kubectl", "get", *names, *(["-n", ns] if ns else []), "--ignore-not-found", "-o", "json")
        got = json.loads(r.stdout) if r.stdout.strip() else {"items": []}
        items = got.get("items", []) if got.get("kind", "List") == "List" else [got]
        out.update(obj_key(i) for i in items)
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
            if g not in ("", "tinkerbell.org", "bmc.tinkerbell.org", "coordination.k8s.io", "discovery.k8s.io"):
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


def image_volume_kept(kube, objs):
    """The API server stores the image volume as given (with the ImageVolume feature gate off it
    would drop `image` from the volume, and a dry run would still succeed)."""
    for w in workloads(objs).values():
        want = [v for v in pod(w).get("volumes", []) if "image" in v]
        if not want:
            continue
        r = kube.run("kubectl", "create", "--dry-run=server", "--validate=strict", "-o", "json", "-f", "-",
                     stdin=json.dumps(w))
        got = [v for v in pod(json.loads(r.stdout)).get("volumes", []) if v["name"] in {x["name"] for x in want}]
        assert got == want, f"{w['metadata']['name']}: the API server made {got} of {want}"


def serve_runs_as_its_service_account(kube, release, ns, objs):
    """The built `tinkerbell serve`, with the all-in-one's env and the ServiceAccount's token
    (so exactly the pinned rules), connects its kube backend (the preflight lists every kind),
    starts every service and logs no RBAC refusal; then stops on SIGTERM."""
    d = ours(objs)[f"{release}-tinkerbell"]
    sa = pod(d)["serviceAccountName"]
    token = kube.run("kubectl", "create", "token", sa, "-n", ns).stdout.strip()
    admin = yaml.safe_load(open(kube.kubeconfig))
    tmp = tempfile.mkdtemp(prefix="tinkerbell-serve.")
    try:
        cfg = os.path.join(tmp, "kubeconfig")
        with open(cfg, "w") as f:
            yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "sa",
                            "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
                            "users": [{"name": "sa", "user": {"token": token}}],
                            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}]}, f)
        env = {e["name"]: e["value"] for e in pod(d)["containers"][0]["env"]}
        # Here: a temporary data directory, free ports, no DHCP/TFTP/syslog (privileged ports).
        env.update(TINKERBELL_DATA_DIR=os.path.join(tmp, "data"), TINKERBELL_HTTP_PORT="0",
                   TINKERBELL_TINK_SERVER_BIND_PORT="0", TINKERBELL_STORE_API_ADDR="127.0.0.1:0",
                   TINKERBELL_DHCP_ENABLED="false", TINKERBELL_TFTP_SERVER_ENABLED="false",
                   TINKERBELL_SYSLOG_ENABLED="false", TINKERBELL_BACKEND_KUBE_CONFIG=cfg,
                   TINKERBELL_LOG_LEVEL="info,kube=warn", NO_COLOR="1")
        env.pop("TINKERBELL_HOOKOS_DIR", None)
        if "TINKERBELL_WORKER_TOKEN_KEY_FILE" in env:  # the mounted Secret, here a file
            key = os.path.join(tmp, "worker-token-key")
            with open(key, "w") as f:
                f.write("k" * 40)
            env["TINKERBELL_WORKER_TOKEN_KEY_FILE"] = key
        log = open(os.path.join(tmp, "log"), "w+")
        p = subprocess.Popen([os.path.join(bin_dir(), "tinkerbell"), *pod(d)["containers"][0]["args"]],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            text = ""
            while time.monotonic() < deadline and p.poll() is None:
                text = open(log.name).read()
                if "tink gRPC server at" in text and "kube backend connected" in text:
                    break
                time.sleep(0.2)
            assert p.poll() is None, f"serve exited {p.returncode}: {open(log.name).read()[-3000:]}"
            assert "kube backend connected" in text, f"not connected in 30 s: {text[-3000:]}"
            time.sleep(3)  # the controllers list and watch
            text = open(log.name).read()
            bad = [line for line in text.splitlines() if re.search(r"forbidden|RBAC|\b403\b", line, re.I)]
            assert not bad, f"RBAC refusals: {bad[:5]}"
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        assert p.returncode in (0, 143, -15), f"serve exit {p.returncode} on SIGTERM: {open(log.name).read()[-2000:]}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Every deployment mode installed for real, each its own release in its own namespace (release
# name -> case). The release names differ: ClusterRoles are named after the release.
MODE_RELEASES = {"tb-aio": "all-in-one", "tb-aio-ns": "all-in-one-host-network",
                 "tb-ds": "boots-daemonset", "tb-hookos-img": "hookos-image",
                 "tb-hookos-url": "hookos-url", "tb-kube-vip": "kube-vip"}


def modes_installed(kube):
    """helm install of each mode: the objects carrying the release's annotations are exactly
    `helm get manifest`; the all-in-one's ServiceAccount gets exactly the pinned union from the
    authorizer (and the built serve runs with it), kube-vip's exactly kube-vip's rules; then
    helm uninstall leaves nothing but the kept worker token key Secret."""
    for release, case in MODE_RELEASES.items():
        values = CASES[case]
        ns = release
        watch = values.get("watchNamespace", ns)

        def install(release=release, values=values, ns=ns, watch=watch):
            if watch != ns:
                kube.run("kubectl", "create", "namespace", watch, check=False)
            r = kube.run("helm", "install", release, CHART, "-n", ns, "--create-namespace",
                         "-f", kube.values_file(values))
            no_new_warnings(r.stderr)
        if check(f"{case}: helm install (release {release} in {ns})", install) is None:
            continue
        objs = check(f"{case}: objects with the release's annotations == helm get manifest",
                     install_matches_manifest, kube, release, ns)
        if objs is None:
            continue
        if all_in_one(values):
            check(f"{case}: the all-in-one ServiceAccount gets exactly the pinned union (authorizer)",
                  rbac_granted, kube, release, ns, watch, ["tinkerbell"])
            if bin_dir() and case == "all-in-one":
                check(f"{case}: the built `tinkerbell serve` runs with the ServiceAccount's rights",
                      serve_runs_as_its_service_account, kube, release, ns, objs)
        if effective(values)["optional"]["kubevip"]["enabled"]:
            def kubevip_granted(ns=ns):
                got = rules_of(kube, ns, "kube-vip", ns)
                want = {k: sorted(v) for k, v in KUBEVIP_RBAC.items()}
                assert got == want, f"{got} != {want}"
            check(f"{case}: kube-vip's ServiceAccount gets exactly kube-vip's rules (authorizer)", kubevip_granted)

        def uninstall(release=release, ns=ns, objs=objs):
            kube.run("helm", "uninstall", release, "-n", ns)
            keep = {obj_key(o) for o in objs if (o["metadata"].get("annotations") or {}).get(
                "helm.sh/resource-policy") == "keep"}
            assert keep <= {("Secret", ns, "tinkerbell-worker-token-key")}, keep
            left = owned_by(kube, release, ns)
            assert left == keep, f"left after uninstall: {sorted(left - keep)}"
            assert existing(kube, objs) == keep, "objects left (by name)"
        check(f"{case}: helm uninstall leaves nothing but the kept Secret", uninstall)


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
            check(f"{case}: deployment mode (all-in-one or per service)", all_in_one_shape, objs, values)
            check(f"{case}: HookOS volume, mount, TINKERBELL_HOOKOS_DIR", hookos_shape, objs, values)
            check(f"{case}: kube-vip as upstream's", kubevip_shape, objs, values)
            if bin_dir():
                check(f"{case}: env names are the binaries' ({bin_dir()})", env_names_accepted, objs, values)
            elif CI:
                fail(f"{case}: env names are the binaries'", "no built service binaries "
                     "(cargo build; or set TINKERBELL_BIN_DIR)")
            else:
                print(f"skip {case}: env names vs binaries (no built binaries; set TINKERBELL_BIN_DIR)")
            if case == "extras":
                check(f"{case}: extraEnv and resources", extras, objs, values)
        for what, (values, message) in REFUSED.items():
            check(f"refused: {what}", refused, helm, {"publicIP": "10.0.0.5", **values}, message)
        if bin_dir():
            check("hookos url mode: the init container's args install HookOS (built tinkerbell)",
                  hookos_fetch_runs, helm)
        elif CI:
            fail("hookos url mode: the init container's args install HookOS", "no built binaries")

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
                if any("image" in v for w in workloads(objs).values() for v in pod(w).get("volumes", [])):
                    check(f"{case}: the API server keeps the HookOS image volume (ImageVolume on)",
                          image_volume_kept, kube, objs)
            for name in ("crds.yaml", "tinkerbell.yaml", "bootstrap.yaml"):
                text = open(os.path.join(ROOT, "deploy", "manifests", name)).read()
                check(f"deploy/manifests/{name}: the API server accepts every object", dry_run, kube, text)
                if name != "crds.yaml":
                    check(f"deploy/manifests/{name}: namespaced objects name their namespace",
                          namespaced_objects_say_where, docs(text), {})
            lifecycle(kube)
            modes_installed(kube)
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
