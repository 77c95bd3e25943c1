#!/usr/bin/env python3
"""Regenerate what is derived from the chart, or (--check) fail when it is stale.

- deploy/helm/tinkerbell/crds/*.yaml   copies of deploy/crds (generated from the Rust types)
- deploy/manifests/*.yaml              the chart rendered with fixed values (`helm template`)
- the values table in deploy/helm/tinkerbell/README.md, from the `# --` comments of values.yaml

helm is the pinned one tests/kube/kube.sh builds from the Go module proxy (cached; the first
build takes minutes), or the one in $TINKERBELL_TEST_KUBE_BIN. It runs with its config, cache and
data homes in a temporary directory and no kubeconfig: nothing of the user's is read or written.

Usage: deploy/helm/generate.py [--check]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(HERE, "tinkerbell")
KUBE_SH = os.path.join(ROOT, "tests", "kube", "kube.sh")
CRDS = os.path.join(ROOT, "deploy", "crds")
MANIFESTS = os.path.join(ROOT, "deploy", "manifests")

# Plain manifests: name -> (values overrides, description).
VARIANTS = {
    "tinkerbell.yaml": (
        {"publicIP": "192.168.1.200", "service": {"type": "LoadBalancer", "loadBalancerIP": "192.168.1.200"},
         "workerAuth": {"create": False}},
        "the whole stack in a cluster, boots behind a DHCP relay, Services on a LoadBalancer at "
        "192.168.1.200 (replace it: grep for 192.168.1.200).\n# tink-server and boots read the "
        "worker token key from the Secret tinkerbell-worker-token-key, which you create first:\n"
        "#   kubectl -n tinkerbell create secret generic tinkerbell-worker-token-key "
        "--from-literal=key=$(openssl rand -hex 32)",
    ),
    "bootstrap.yaml": (
        {"boots": {"enabled": False}, "watchNamespace": "eksa-system", "workerAuth": {"create": False}},
        "a bootstrap cluster: everything but boots, which runs as a host-network container on "
        "the admin machine (deploy/README.md); reads objects in eksa-system.\n# tink-server reads "
        "the worker token key from the Secret tinkerbell-worker-token-key, which you create "
        "first\n# from the key file boots gets (--worker-token-key-file):\n"
        "#   kubectl -n tinkerbell create secret generic tinkerbell-worker-token-key --from-file=key=KEYFILE",
    ),
}


class ToolsUnavailable(Exception):
    """helm/kubectl/kube-apiserver cannot be had here (no Go toolchain, build failed)."""


def kube_bin() -> str:
    """The directory holding helm, kubectl, kube-apiserver and etcd."""
    d = os.environ.get("TINKERBELL_TEST_KUBE_BIN")
    if not d:
        r = subprocess.run([KUBE_SH, "bin"], capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise ToolsUnavailable(f"tests/kube/kube.sh bin: {r.stderr.strip() or r.returncode}")
        d = r.stdout.strip()
    for tool in ("helm", "kubectl", "kube-apiserver"):
        if not os.access(os.path.join(d, tool), os.X_OK):
            raise ToolsUnavailable(f"no {tool} in {d}")
    return d


class Helm:
    """The pinned helm (and kubectl), isolated from the user's homes; a context manager."""

    def __init__(self, bindir: str, kubeconfig: str | None = None):
        self.bindir = bindir
        self.tmp = tempfile.mkdtemp(prefix="tinkerbell-helm.")
        # No kubeconfig unless given: helm template and lint must not reach any cluster.
        self.kubeconfig = kubeconfig or os.path.join(self.tmp, "no-kubeconfig")
        self.env = dict(os.environ, KUBECONFIG=self.kubeconfig,
                        HELM_CACHE_HOME=os.path.join(self.tmp, "cache"),
                        HELM_CONFIG_HOME=os.path.join(self.tmp, "config"),
                        HELM_DATA_HOME=os.path.join(self.tmp, "data"))

    def __enter__(self) -> "Helm":
        return self

    def __exit__(self, *_exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, tool: str, *args: str, stdin: str | None = None, check: bool = True,
            timeout: int = 300) -> subprocess.CompletedProcess:
        """Run helm or kubectl with the kubeconfig given explicitly; raise with its stderr."""
        cmd = [os.path.join(self.bindir, tool), "--kubeconfig", self.kubeconfig, *args]
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=self.env,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)}: exit {r.returncode}: "
                                 f"{(r.stderr or r.stdout).strip()}")
        return r

    def values_file(self, values: dict) -> str:
        fd, path = tempfile.mkstemp(suffix=".yaml", dir=self.tmp)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(values, f)
        return path

    def template(self, values: dict, release: str = "tinkerbell", namespace: str = "tinkerbell",
                 chart: str = CHART) -> str:
        """`helm template` of the chart with these values (no CRDs, as helm template does)."""
        return self.run("helm", "template", release, chart, "--namespace", namespace,
                        "-f", self.values_file(values)).stdout


def values_doc(path: str) -> list[tuple[str, str, str]]:
    """(dotted key, default, description) of every leaf in values.yaml, in file order."""
    rows, stack, comment = [], [], None
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            m = re.match(r"^(\s*)# -- (.*)$", line)
            if m:
                comment = m.group(2).strip()
                continue
            if line.lstrip().startswith("#"):
                continue
            m = re.match(r"^(\s*)([A-Za-z0-9_]+):\s*(.*?)\s*$", line)
            if not m:
                continue
            depth = len(m.group(1)) // 2
            stack = stack[:depth] + [m.group(2)]
            if m.group(3) == "":
                comment = None
                continue
            if comment is None:
                raise SystemExit(f"values.yaml: {'.'.join(stack)} has no '# --' comment")
            rows.append((".".join(stack), m.group(3), comment))
            comment = None
    return rows


def readme_table() -> str:
    out = ["| value | default | what it does |", "|---|---|---|"]
    for key, default, doc in values_doc(os.path.join(CHART, "values.yaml")):
        cell = doc.replace("|", "\\|")
        out.append(f"| `{key}` | `{default}` | {cell} |")
    return "\n".join(out) + "\n"


def expected(helm: Helm) -> dict[str, str]:
    files: dict[str, str] = {}
    crd_texts = []
    for name in sorted(os.listdir(CRDS)):
        with open(os.path.join(CRDS, name)) as f:
            text = f.read()
        files[os.path.join(CHART, "crds", name)] = text
        crd_texts.append(text.strip("\n").removeprefix("---\n") + "\n")
    header = "# Generated by deploy/helm/generate.py from {}. Do not edit.\n"
    files[os.path.join(MANIFESTS, "crds.yaml")] = (
        header.format("deploy/crds") + "---\n" + "---\n".join(crd_texts)
    )
    for name, (over, what) in VARIANTS.items():
        body = helm.template(over, release="tinkerbell", namespace="tinkerbell")
        files[os.path.join(MANIFESTS, name)] = (
            header.format("deploy/helm/tinkerbell") + f"# {what}.\n# Apply crds.yaml first.\n" + body
        )
    readme = os.path.join(CHART, "README.md")
    with open(readme) as f:
        text = f.read()
    begin, end = "<!-- values:begin -->\n", "<!-- values:end -->"
    i, j = text.index(begin) + len(begin), text.index(end)
    files[readme] = text[:i] + readme_table() + text[j:]
    return files


def main() -> None:
    check = "--check" in sys.argv[1:]
    try:
        bindir = kube_bin()
    except ToolsUnavailable as e:
        sys.exit(f"generate.py: helm is needed to render deploy/manifests: {e}")
    stale = []
    with Helm(bindir) as helm:
        files = expected(helm)
    for path, text in files.items():
        try:
            with open(path) as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            stale.append(os.path.relpath(path, ROOT))
            if not check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
    if check and stale:
        sys.exit("stale (run deploy/helm/generate.py): " + ", ".join(stale))
    for s in stale:
        print(f"wrote {s}")


if __name__ == "__main__":
    main()
