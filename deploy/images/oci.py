#!/usr/bin/env python3
"""Write a FROM-scratch container image as an OCI image layout, without a Docker daemon.

Why: the machines this project runs on cannot pull images, and CI and air-gapped admin
machines may have no daemon at all. A static binary needs nothing but itself, a passwd/group
entry for its numeric user and an nsswitch.conf, so the image is one layer we can write
ourselves: a deterministic tar (mtime 0, uid/gid 0 unless stated, sorted), gzip'ed with a fixed
header, then the config, manifest and index.json named by their sha256 digests.

The archive written by `build` is an OCI image layout (oci-layout, index.json, blobs/sha256/...)
that also carries a Docker `manifest.json` pointing at the same blobs, so the one file works
with `docker load -i`, `podman load`, `skopeo copy oci-archive:...`, `ctr import` and
`crane push`.

Usage:
  oci.py build --binary PATH --name NAME --tag TAG --out FILE.tar [--user 65532]
               [--port 50061/tcp ...] [--layout-dir DIR]
  oci.py build-data --dir DIR --name NAME --tag TAG --out FILE.tar [--layout-dir DIR]
                                  # a data-only image: DIR's SHA256SUMS and the files it
                                  # lists (each checked) at the root (the `hookos` image)
  oci.py verify FILE.tar|DIR      # re-hashes every blob and checks every reference (and a
                                  # data image's files against its SHA256SUMS)
  oci.py context --binary PATH --name NAME --out CTX.tar [--user N] [--port P]...
                                  # the same rootfs + a FROM-scratch Dockerfile, for
                                  # `docker build -t IMAGE - < CTX.tar`
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

REPO_PREFIX = "tinkerbell-rs"
DATA_DIR = "var/lib/tinkerbell"
SUMS = "SHA256SUMS"


def _dir(tar: tarfile.TarFile, name: str, mode: int = 0o755, uid: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uid = info.gid = uid
    info.mtime = 0
    tar.addfile(info)


def _file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.uid = info.gid = 0
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def layer_tar(binary: str, name: str, uid: int) -> bytes:
    """The root filesystem: the binary, users, NSS config, /tmp and the data dir."""
    with open(binary, "rb") as f:
        exe = f.read()
    passwd = "root:x:0:0:root:/root:/sbin/nologin\n"
    group = "root:x:0:\n"
    if uid != 0:
        passwd += f"nonroot:x:{uid}:{uid}:nonroot:/home/nonroot:/sbin/nologin\n"
        group += f"nonroot:x:{uid}:\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _dir(tar, "etc")
        _file(tar, "etc/group", group.encode())
        # Static glibc still reads nsswitch.conf for getaddrinfo; without it, names in
        # /etc/hosts (which the runtime writes) may not resolve.
        _file(tar, "etc/nsswitch.conf", b"hosts: files dns\npasswd: files\ngroup: files\n")
        _file(tar, "etc/passwd", passwd.encode())
        if uid != 0:
            _dir(tar, "home")
            _dir(tar, "home/nonroot", 0o700, uid)
        _dir(tar, "tmp", 0o1777)
        _dir(tar, "usr")
        _dir(tar, "usr/bin")
        _file(tar, f"usr/bin/{name}", exe, 0o755)
        _dir(tar, "var")
        _dir(tar, "var/lib")
        _dir(tar, DATA_DIR, 0o750, uid)
    return buf.getvalue()


def read_sums(src: str) -> list[str]:
    """The files SHA256SUMS in `src` lists (sha256sum format), each checked against it."""
    names = []
    with open(os.path.join(src, SUMS)) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            digest, sep, name = line.rstrip("\n").partition("  ")
            name = name or line.rstrip("\n").partition(" *")[2]
            if len(digest) != 64 or not name or "/" in name or name in (".", ".."):
                raise SystemExit(f"{src}/{SUMS} line {n}: not `<sha256>  <file>`")
            with open(os.path.join(src, name), "rb") as g:
                actual = hashlib.sha256(g.read()).hexdigest()
            if actual != digest:
                raise SystemExit(f"{src}/{name}: sha256 {actual} does not match {SUMS} ({digest})")
            names.append(name)
    if not names:
        raise SystemExit(f"{src}/{SUMS} lists no files")
    return names


def data_layer_tar(src: str) -> bytes:
    """A data-only root filesystem: SHA256SUMS and the files it lists, at the root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(read_sums(src) + [SUMS]):
            with open(os.path.join(src, name), "rb") as f:
                _file(tar, name, f.read())
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest, len(data)


def build(args: argparse.Namespace) -> None:
    uid = args.user
    raw = layer_tar(args.binary, args.name, uid)
    description = (
        f"{args.name} (tinkerbell-rs), static binary FROM scratch. No CA bundle: "
        "TLS peers are verified against CAs given explicitly (kube: the service "
        "account CA or the kubeconfig's)."
    )
    image_config = {
        "User": f"{uid}:{uid}",
        "Entrypoint": [f"/usr/bin/{args.name}"],
        "Env": ["PATH=/usr/bin", f"TINKERBELL_DATA_DIR=/{DATA_DIR}"],
        "WorkingDir": "/",
        "ExposedPorts": {p: {} for p in sorted(args.port)},
    }
    write_image(raw, args.name, args.tag, args.out, args.layout_dir, image_config, description)


def build_data(args: argparse.Namespace) -> None:
    """A data-only image (no binary, no entrypoint): the HookOS artifacts, mounted as a
    Kubernetes image volume or copied out of a container."""
    raw = data_layer_tar(args.dir)
    description = (
        f"{args.name} (tinkerbell-rs): data only, FROM scratch. At the root: {SUMS} and the "
        "files it lists. Mount it as an image volume and point TINKERBELL_HOOKOS_DIR there."
    )
    write_image(raw, args.name, args.tag, args.out, args.layout_dir, {"WorkingDir": "/"}, description)


def write_image(raw: bytes, name: str, tag: str, out: str, layout_dir: str | None,
                image_config: dict, description: str) -> None:
    """One-layer image of the root filesystem `raw` as an OCI layout archive at `out`."""
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6, filename="") as z:
        z.write(raw)
    blobs: dict[str, bytes] = {}
    layer_digest, layer_size = _blob(blobs, gz.getvalue())
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    ref = f"{REPO_PREFIX}/{name}:{tag}"
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.source": "tinkerbell-rs deploy/images",
        "org.opencontainers.image.description": description,
    }
    config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {**image_config, "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "deploy/images/oci.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest, config_size = _blob(blobs, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
        "annotations": labels,
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest, manifest_size = _blob(blobs, manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "org.opencontainers.image.ref.name": tag,
                    "io.containerd.image.name": ref,
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": "blobs/sha256/" + config_digest.split(":")[1],
            "RepoTags": [ref],
            "Layers": ["blobs/sha256/" + layer_digest.split(":")[1]],
        }
    ]
    files: dict[str, bytes] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index, sort_keys=True, separators=(",", ":")).encode(),
        "manifest.json": json.dumps(docker_manifest, separators=(",", ":")).encode(),
    }
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.split(":")[1]] = data

    tmp = out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _dir(tar, "blobs")
        _dir(tar, "blobs/sha256")
        for path in sorted(files):
            _file(tar, path, files[path])
    os.replace(tmp, out)
    if layout_dir:
        for path, data in files.items():
            dest = os.path.join(layout_dir, path)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
    print(f"{ref} {manifest_digest} layer={layer_size}B -> {out}")


def context(args: argparse.Namespace) -> None:
    """A `docker build` context (tar, for `docker build -`): Dockerfile + the same rootfs."""
    raw = layer_tar(args.binary, args.name, args.user)
    lines = ["FROM scratch", "COPY rootfs/ /", f"USER {args.user}:{args.user}",
             "ENV PATH=/usr/bin TINKERBELL_DATA_DIR=/" + DATA_DIR]
    lines += [f"EXPOSE {p}" for p in sorted(args.port)]
    lines += [f'LABEL org.opencontainers.image.title="{args.name}"',
              f'ENTRYPOINT ["/usr/bin/{args.name}"]']
    src = tarfile.open(fileobj=io.BytesIO(raw))
    with tarfile.open(args.out, "w", format=tarfile.PAX_FORMAT) as tar:
        _file(tar, "Dockerfile", ("\n".join(lines) + "\n").encode())
        _dir(tar, "rootfs")
        for m in src.getmembers():
            data = src.extractfile(m) if m.isfile() else None
            m.name = "rootfs/" + m.name
            tar.addfile(m, data)


def _reader(path: str):
    if os.path.isdir(path):
        def read(name: str) -> bytes:
            with open(os.path.join(path, name), "rb") as f:
                return f.read()
        return read
    tar = tarfile.open(path)

    def read_tar(name: str) -> bytes:
        member = tar.extractfile(name)
        if member is None:
            raise SystemExit(f"{path}: {name} is not a regular file")
        return member.read()
    return read_tar


def _check(read, desc: dict) -> bytes:
    algo, hexd = desc["digest"].split(":")
    if algo != "sha256":
        raise SystemExit(f"unexpected digest algorithm {algo}")
    data = read(f"blobs/sha256/{hexd}")
    if hashlib.sha256(data).hexdigest() != hexd:
        raise SystemExit(f"blob {hexd}: content does not match its digest")
    if len(data) != desc["size"]:
        raise SystemExit(f"blob {hexd}: size {len(data)} != {desc['size']}")
    return data


def verify(args: argparse.Namespace) -> None:
    read = _reader(args.path)
    if json.loads(read("oci-layout"))["imageLayoutVersion"] != "1.0.0":
        raise SystemExit("oci-layout: unknown version")
    index = json.loads(read("index.json"))
    if index.get("schemaVersion") != 2 or not index.get("manifests"):
        raise SystemExit("index.json: not an OCI index with manifests")
    for m in index["manifests"]:
        manifest = json.loads(_check(read, m))
        config = json.loads(_check(read, manifest["config"]))
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest["layers"]):
            raise SystemExit("config diff_ids and manifest layers differ in number")
        for layer, diff_id in zip(manifest["layers"], diff_ids):
            data = _check(read, layer)
            if layer["mediaType"].endswith("+gzip"):
                data = gzip.decompress(data)
            if "sha256:" + hashlib.sha256(data).hexdigest() != diff_id:
                raise SystemExit(f"layer {layer['digest']}: diff_id mismatch")
            layer_tar_ = tarfile.open(fileobj=io.BytesIO(data))
            names = layer_tar_.getnames()
            if "Entrypoint" in config["config"]:
                entry = config["config"]["Entrypoint"][0].lstrip("/")
                if entry not in names:
                    raise SystemExit(f"layer {layer['digest']}: no {entry}")
            else:
                # A data image: every file its SHA256SUMS lists is there and matches.
                check_sums(layer_tar_, layer["digest"])
        name = m.get("annotations", {}).get("io.containerd.image.name", "?")
        print(f"ok {name} {m['digest']}")


def check_sums(tar: tarfile.TarFile, where: str) -> None:
    member = tar.extractfile(SUMS) if SUMS in tar.getnames() else None
    if member is None:
        raise SystemExit(f"layer {where}: a data image without {SUMS}")
    for line in member.read().decode().splitlines():
        digest, _, name = line.partition("  ")
        f = tar.extractfile(name) if name in tar.getnames() else None
        if f is None or hashlib.sha256(f.read()).hexdigest() != digest:
            raise SystemExit(f"layer {where}: {name} is missing or does not match {SUMS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--binary", required=True)
    b.add_argument("--name", required=True)
    b.add_argument("--tag", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--user", type=int, default=65532)
    b.add_argument("--port", action="append", default=[])
    b.add_argument("--layout-dir")
    c = sub.add_parser("context")
    c.add_argument("--binary", required=True)
    c.add_argument("--name", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--user", type=int, default=65532)
    c.add_argument("--port", action="append", default=[])
    d = sub.add_parser("build-data")
    d.add_argument("--dir", required=True)
    d.add_argument("--name", required=True)
    d.add_argument("--tag", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--layout-dir")
    v = sub.add_parser("verify")
    v.add_argument("path")
    args = p.parse_args()
    if args.cmd == "build":
        build(args)
    elif args.cmd == "build-data":
        build_data(args)
    elif args.cmd == "context":
        context(args)
    else:
        verify(args)


if __name__ == "__main__":
    sys.exit(main())
