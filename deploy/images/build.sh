#!/usr/bin/env bash
# Build static release binaries and one FROM-scratch container image per binary.
#
#   deploy/images/build.sh [--no-docker|--docker-build] [--tag TAG] [--out DIR]
#                          [--hookos-dir DIR | --with-hookos] [BINARY...|hookos]
#
# For every binary (default: all of IMAGES below) it writes DIR/<binary>.oci.tar, an OCI image
# layout (no daemon needed: deploy/images/oci.py writes it; it also carries a Docker
# manifest.json), and, when a Docker engine answers and --no-docker is not given, loads it as
# tinkerbell-rs/<binary>:TAG with `docker load`. With --docker-build the Docker engine builds the
# same rootfs from a generated FROM-scratch Dockerfile instead (`docker build -`). Nothing is
# pulled: the images are FROM scratch.
#
# With --hookos-dir DIR (a `tinkerbell hookos build --dir DIR` or hookos/build.sh output) it also
# writes DIR's HookOS as the data-only image `hookos` (SHA256SUMS and the files it lists, each
# checked, at the image's root; no binary): what the Helm chart mounts as an image volume. Name
# only `hookos` to build that image alone (no cargo build). With --with-hookos (the release
# build) it builds HookOS itself after the binaries: hookos/build.sh with the static tink-worker
# just built, into OUT/hookos (vmlinuz-x86_64, initramfs-x86_64, manifest.txt, SHA256SUMS: the
# release's HookOS artifacts, what `tinkerbell hookos fetch --url` downloads), then its image.
#
# Env: TAG (default: the workspace version), OUT (default: target/images),
#      CARGO_PROFILE_FOR_IMAGES (default: release), DOCKER (default: docker).
set -euo pipefail
cd "$(dirname "$0")/../.."

# One line per image: binary  cargo-package  numeric-user  exposed-ports (comma-separated, `-`
# for none). User 0 only where the binary must bind privileged ports (DHCP 67, TFTP 69, syslog
# 514) on the host network or, for tink-worker, write block devices and kexec; everything else
# runs as 65532 (nonroot). Every binary is built by the one cargo invocation below (the static
# release build is the slow part; one invocation shares it).
IMAGES=(
  "tinkerbell      tinkerbell                  0      7080/tcp,7081/tcp,42113/tcp,67/udp,69/udp,514/udp"
  "boots           tinkerbell-boots            0      67/udp,69/udp,514/udp,7080/tcp"
  "hegel           tinkerbell-hegel            65532  50061/tcp"
  "tink-server     tinkerbell-tink-server      65532  42113/tcp"
  "tink-controller tinkerbell-tink-controller  65532  -"
  "rufio           tinkerbell-rufio            65532  -"
  "tink-worker     tinkerbell-tink-worker      0      -"
)

TARGET=x86_64-unknown-linux-gnu
PROFILE=${CARGO_PROFILE_FOR_IMAGES:-release}
OUT=${OUT:-target/images}
DOCKER=${DOCKER:-docker}
TAG=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)}
use_docker=auto
hookos_dir=""
with_hookos=""
want=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-docker) use_docker=no ;;
    --docker-build) use_docker=build ;;
    --tag) TAG=$2; shift ;;
    --out) OUT=$2; shift ;;
    --hookos-dir) hookos_dir=$2; shift ;;
    --with-hookos) with_hookos=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    *) want+=("$1") ;;
  esac
  shift
done

# `hookos` is the data image, not a binary.
only_hookos=""
if printf '%s\n' "${want[@]}" | grep -qx hookos; then
  [ -n "$hookos_dir" ] || { echo "build.sh: the hookos image needs --hookos-dir DIR" >&2; exit 2; }
  mapfile -t want < <(printf '%s\n' "${want[@]}" | grep -vx hookos || true)
  [ ${#want[@]} -gt 0 ] || only_hookos=1
fi
[ -z "$with_hookos" ] || [ -z "$hookos_dir" ] || { echo "build.sh: --with-hookos or --hookos-dir, not both" >&2; exit 2; }
# hookos_image DIR: DIR's HookOS as the data image (loaded when an engine answers).
hookos_image() {
  mkdir -p "$OUT"
  python3 deploy/images/oci.py build-data --dir "$1" --name hookos --tag "$TAG" \
    --out "$OUT/hookos.oci.tar"
  if { [ "$use_docker" = auto ] && "$DOCKER" info >/dev/null 2>&1; } || [ "$use_docker" = build ]; then
    "$DOCKER" load -q -i "$OUT/hookos.oci.tar"
  fi
}
[ -z "$hookos_dir" ] || hookos_image "$hookos_dir"
[ -z "$only_hookos" ] || exit 0

selected=()
for line in "${IMAGES[@]}"; do
  read -r bin _ <<<"$line"
  if [ ${#want[@]} -eq 0 ] || printf '%s\n' "${want[@]}" | grep -qx "$bin"; then
    selected+=("$line")
  fi
done
for w in "${want[@]}"; do
  printf '%s\n' "${selected[@]}" | awk '{print $1}' | grep -qx "$w" \
    || { echo "build.sh: no image named $w (known: $(printf '%s\n' "${IMAGES[@]}" | awk '{printf "%s ", $1}'))" >&2; exit 2; }
done

pkgs=()
for line in "${selected[@]}"; do
  read -r _ pkg _ <<<"$line"
  pkgs+=(-p "$pkg")
done
# HookOS carries the static tink-worker.
[ -z "$with_hookos" ] || pkgs+=(-p tinkerbell-tink-worker)

# Static glibc: crt-static for the target only (build scripts and proc-macros stay dynamic
# because --target is given). See shared crates.md.
start=$(date +%s)
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" CARGO_INCREMENTAL=0 \
  cargo build --locked --profile "$PROFILE" --target "$TARGET" "${pkgs[@]}"
echo "build.sh: cargo build ($PROFILE, static) took $(( $(date +%s) - start ))s" >&2

bindir=${CARGO_TARGET_DIR:-target}/$TARGET/$PROFILE
mkdir -p "$OUT"
for line in "${selected[@]}"; do
  read -r bin _ user ports <<<"$line"
  exe=$bindir/$bin
  # Refuse to ship a dynamically linked binary: it would not start FROM scratch.
  if ! file -b "$exe" | grep -q 'static'; then
    echo "build.sh: $exe is not statically linked: $(file -b "$exe")" >&2
    exit 1
  fi
  if ldd "$exe" 2>&1 | grep -q '=>'; then
    echo "build.sh: $exe has dynamic dependencies:" >&2
    ldd "$exe" >&2
    exit 1
  fi
  port_args=()
  if [ "$ports" != - ]; then
    IFS=, read -r -a plist <<<"$ports"
    for p in "${plist[@]}"; do port_args+=(--port "$p"); done
  fi
  python3 deploy/images/oci.py build --binary "$exe" --name "$bin" --tag "$TAG" \
    --user "$user" "${port_args[@]}" --out "$OUT/$bin.oci.tar"
done

if [ "$use_docker" = build ]; then
  for line in "${selected[@]}"; do
    read -r bin _ user ports <<<"$line"
    port_args=()
    if [ "$ports" != - ]; then
      IFS=, read -r -a plist <<<"$ports"
      for p in "${plist[@]}"; do port_args+=(--port "$p"); done
    fi
    python3 deploy/images/oci.py context --binary "$bindir/$bin" --name "$bin" --user "$user" \
      "${port_args[@]}" --out "$OUT/$bin.context.tar"
    "$DOCKER" build -q -t "tinkerbell-rs/$bin:$TAG" - <"$OUT/$bin.context.tar"
    rm -f "$OUT/$bin.context.tar"
  done
elif [ "$use_docker" = auto ] && "$DOCKER" info >/dev/null 2>&1; then
  for line in "${selected[@]}"; do
    read -r bin _ <<<"$line"
    "$DOCKER" load -q -i "$OUT/$bin.oci.tar"
  done
elif [ "$use_docker" = auto ]; then
  echo "build.sh: no Docker engine answers; wrote the OCI archives only" >&2
fi

if [ -n "$with_hookos" ]; then
  start=$(date +%s)
  hookos/build.sh --out "$OUT/hookos" --worker "$bindir/tink-worker" > "$OUT/hookos-build.log" 2>&1 \
    || { tail -20 "$OUT/hookos-build.log" >&2; echo "build.sh: hookos/build.sh failed" >&2; exit 1; }
  echo "build.sh: HookOS built in $(( $(date +%s) - start ))s: $OUT/hookos ($(wc -l < "$OUT/hookos/SHA256SUMS") files in SHA256SUMS)" >&2
  hookos_image "$OUT/hookos"
fi
