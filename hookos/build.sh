#!/usr/bin/env bash
# Builds HookOS — vmlinuz-x86_64 and initramfs-x86_64 — from Debian packages.
#
#   hookos/build.sh [--out DIR] [--cache DIR] [--worker PATH | --no-worker]
#                   [--firmware-dir DIR]... [--overlay DIR]... [--unpinned]
#
# * kernel: Debian's generic amd64 kernel (linux-image-<abi>-amd64), version pinned in
#   hookos/pins; only the modules listed in hookos/modules (+ their modules.dep closure)
#   go into the initramfs, then depmod runs on the result.
# * firmware: every file the chosen modules declare (modinfo -F firmware) that exists in the
#   firmware packages of hookos/pins (Debian main) or in a --firmware-dir.
# * userland: busybox-static (pinned), hookos/init as /init, hookos/rootfs overlay, then each
#   --overlay DIR in order (the e2e test's installed OS is HookOS with its main replaced).
# * worker: --worker PATH is copied to /usr/bin/tink-worker. Without it, the script builds the
#   `tink-worker` binary of services/tink/worker statically with cargo if the crate has one,
#   and otherwise builds an image without a worker (the init then says so on the console).
#
# No chroot, no root needed: apt-get download + dpkg -x. Downloads and unpacked trees are
# cached under --cache (default target/hookos-cache), so a rebuild takes about a second.
# The output is byte-reproducible for the same inputs (sorted cpio, fixed mtimes, zstd).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$repo/target/hookos"
cache="$repo/target/hookos-cache"
worker=""
no_worker=0
unpinned=0
firmware_dirs=()
overlays=()

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --worker) worker=$2; shift 2 ;;
    --no-worker) no_worker=1; shift ;;
    --firmware-dir) firmware_dirs+=("$2"); shift 2 ;;
    --overlay) [ -d "$2" ] || { echo "build.sh: --overlay $2: not a directory" >&2; exit 2; }
               overlays+=("$(cd "$2" && pwd)"); shift 2 ;;
    --unpinned) unpinned=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

t0=$(date +%s.%N)
el() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%5.1f", b-a}'; }
say() { echo "[$(el) s] $*"; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg dpkg-deb depmod modinfo cpio; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs kmod and cpio)"
done

mkdir -p "$cache/debs" "$cache/x" "$out"
out=$(cd "$out" && pwd)
cache=$(cd "$cache" && pwd)

# --- pins ------------------------------------------------------------------------------------
# hookos/pins: "package=version" lines. A pinned version that the mirror no longer carries
# (Debian keeps only the newest kernel ABI in bookworm) is replaced by the candidate with a
# loud warning, unless HOOKOS_STRICT_PINS=1; --unpinned always takes the candidates.
declare -A pin=()
while IFS= read -r line; do
  line=${line%%#*}; line=$(echo "$line" | tr -d '[:space:]')
  [ -n "$line" ] && pin[${line%%=*}]=${line#*=}
done < "$here/pins"

kernel_meta=linux-image-amd64
# A machine whose package lists were never fetched (or were cleaned) knows no packages.
if ! apt-cache show "$kernel_meta" >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "apt-cache does not know $kernel_meta; run apt-get update (as root)"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
kpkg=""
for p in "${!pin[@]}"; do case $p in linux-image-[0-9]*) kpkg=$p ;; esac; done
if [ "$unpinned" = 1 ] || [ -z "$kpkg" ]; then
  kpkg=$(apt-cache depends "$kernel_meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$kpkg" ] || die "apt-cache does not know $kernel_meta (run apt-get update)"
fi

# resolve <pkg>: prints the version to use.
resolve() {
  local p=$1 want=${pin[$1]:-} cand
  cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/{print $2}')
  if [ -n "$want" ] && [ "$unpinned" = 0 ]; then
    if [ -f "$cache/debs/${p}_${want//:/%3a}_amd64.deb" ] || [ -f "$cache/debs/${p}_${want//:/%3a}_all.deb" ] \
      || apt-cache madison "$p" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$want"; then
      echo "$want"; return
    fi
    [ "${HOOKOS_STRICT_PINS:-0}" = 1 ] && die "$p=$want is pinned but not available (HOOKOS_STRICT_PINS=1)"
    echo "build.sh: WARNING: $p=$want is pinned but the mirror no longer has it; using $cand" >&2
    echo "build.sh: WARNING: update hookos/pins (and rerun the tests) to make the build reproducible again" >&2
  fi
  [ -n "$cand" ] && [ "$cand" != "(none)" ] || { echo ""; return; }
  echo "$cand"
}

# fetch <pkg> <version>: downloads into the cache (once) and unpacks (once); prints the tree.
fetch() {
  local p=$1 v=$2 deb dir
  dir="$cache/x/${p}_${v//:/%3a}"
  if [ ! -f "$dir/.done" ]; then
    deb=$(ls "$cache/debs/${p}_${v//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
      (cd "$cache/debs" && apt-get download -q "$p=$v" >/dev/null 2>"$cache/debs/$p.err") \
        || die "apt-get download $p=$v failed: $(cat "$cache/debs/$p.err")"
      deb=$(ls "$cache/debs/${p}_${v//:/%3a}_"*.deb | head -1)
    fi
    rm -rf "$dir"; mkdir -p "$dir"
    dpkg -x "$deb" "$dir"
    touch "$dir/.done"
  fi
  echo "$dir"
}

kver=$(resolve "$kpkg")
[ -n "$kver" ] || die "no version of $kpkg is available"
say "kernel package $kpkg=$kver"
ktree=$(fetch "$kpkg" "$kver")
abi=$(ls "$ktree/lib/modules")
[ -f "$ktree/lib/modules/$abi/modules.dep" ] || depmod -b "$ktree" "$abi"
vmlinuz=$(ls "$ktree"/boot/vmlinuz-*)

bbver=$(resolve busybox-static)
[ -n "$bbver" ] || die "no version of busybox-static is available"
bbtree=$(fetch busybox-static "$bbver")
say "busybox-static=$bbver"

# --- modules and firmware: cached in $cache/base, keyed by the inputs ------------------------------
base="$cache/base"
key=$(cat "$here/pins" "$here/modules" <(echo "$kpkg=$kver ${firmware_dirs[*]:-}") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$base/.key" 2>/dev/null)" != "$key" ]; then
rm -rf "$base"; mkdir -p "$base"
kmods="$ktree/lib/modules/$abi"
declare -A path_of=()
while IFS= read -r rel; do
  b=${rel##*/}; b=${b%.ko}; path_of[${b//-/_}]=$rel
done < <(cut -d: -f1 "$kmods/modules.dep")
declare -A take=()
missing_mods=()
add_closure() {
  local rel=$1 dep
  [ -n "${take[$rel]:-}" ] && return
  take[$rel]=1
  for dep in $(grep -m1 "^$rel:" "$kmods/modules.dep" | cut -d: -f2); do add_closure "$dep"; done
}
wanted=()
while IFS= read -r line; do
  line=${line%%#*}
  for m in $line; do wanted+=("${m//-/_}"); done
done < "$here/modules"
for m in "${wanted[@]}"; do
  if [ -n "${path_of[$m]:-}" ]; then
    add_closure "${path_of[$m]}"
  elif grep -qE "/${m}\.ko$|/${m//_/-}\.ko$" "$kmods/modules.builtin"; then
    :   # built into the kernel
  else
    missing_mods+=("$m")
  fi
done
[ "${#missing_mods[@]}" -eq 0 ] || echo "build.sh: WARNING: not in $kpkg: ${missing_mods[*]}" >&2
dst="$base/lib/modules/$abi"
mkdir -p "$dst" "$base/lib/firmware" "$base/etc/hookos"
for rel in "${!take[@]}"; do
  mkdir -p "$dst/$(dirname "$rel")"
  cp "$kmods/$rel" "$dst/$rel"
done
cp "$kmods"/modules.builtin "$kmods"/modules.builtin.modinfo "$kmods"/modules.order "$dst/"
depmod -b "$base" "$abi"
printf '%s\n' "${wanted[@]}" > "$base/etc/hookos/modules"
say "modules: ${#take[@]} files ($(du -sk "$dst" | cut -f1) KiB) for ${#wanted[@]} wanted drivers"

# --- firmware: what the chosen modules ask for, from Debian's redistributable packages ----------
fw_sources=()
for p in "${!pin[@]}"; do
  case $p in firmware-*) ;; *) continue ;; esac
  v=$(resolve "$p")
  if [ -n "$v" ]; then fw_sources+=("$(fetch "$p" "$v")/lib/firmware"); else echo "build.sh: note: $p is not available from the configured apt sources; skipped" >&2; fi
done
for d in "${firmware_dirs[@]}"; do fw_sources+=("$d"); done
fw_count=0
: > "$base/etc/hookos/firmware"
fw_wanted=$( (cd "$kmods" && printf "%s\n" "${!take[@]}" | xargs modinfo -F firmware) | sort -u)
: > "$base/etc/hookos/firmware.missing"
for f in $fw_wanted; do
  found=0
  for src in "${fw_sources[@]}"; do
    if [ -f "$src/$f" ]; then
      mkdir -p "$base/lib/firmware/$(dirname "$f")"
      cp -L "$src/$f" "$base/lib/firmware/$f"
      echo "$f" >> "$base/etc/hookos/firmware"
      fw_count=$((fw_count + 1))
      found=1
      break
    fi
  done
  [ $found = 1 ] || echo "$f" >> "$base/etc/hookos/firmware.missing"
done
say "firmware: $fw_count of $(echo "$fw_wanted" | grep -c . || true) files the modules name ($(du -sk "$base/lib/firmware" | cut -f1) KiB)"

echo "modules $(wc -l < "$base/etc/hookos/modules") wanted, ${#take[@]} files" > "$base/.summary"
echo "firmware $fw_count files" >> "$base/.summary"
echo "$key" > "$base/.key"
else
  say "modules and firmware: cached ($(tr '\n' ';' < "$base/.summary"))"
fi

# --- staging tree ------------------------------------------------------------------------------
stage="$cache/stage"
rm -rf "$stage"
cp -a "$base/." "$stage/"
rm -f "$stage/.key" "$stage/.summary"
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,run,tmp,etc,root,var/log,usr/bin,usr/sbin}
cp "$bbtree/bin/busybox" "$stage/bin/busybox"
cp "$here/init" "$stage/init"
cp -R "$here/rootfs/." "$stage/"
for o in "${overlays[@]}"; do cp -R "$o/." "$stage/"; done
chmod 0755 "$stage/init"
chmod 1777 "$stage/tmp"

# --- worker -------------------------------------------------------------------------------------
worker_note=""
if [ -z "$worker" ] && [ "$no_worker" = 0 ]; then
  # Does the worker crate have a binary target named tink-worker (yet)?
  has_bin=$(cd "$repo" && cargo metadata --no-deps --format-version 1 --locked 2>/dev/null | python3 -c '
import json, sys
pkgs = json.load(sys.stdin)["packages"]
print(any(t["name"] == "tink-worker" and "bin" in t["kind"]
          for p in pkgs if p["name"] == "tinkerbell-tink-worker" for t in p["targets"]))' || echo False)
  if [ "$has_bin" = True ]; then
    if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
      target=x86_64-unknown-linux-musl
      (cd "$repo" && cargo build -q --release --locked -p tinkerbell-tink-worker --bin tink-worker --target $target)
    else
      # No musl target: glibc with a static CRT is just as self-contained for this binary.
      target=x86_64-unknown-linux-gnu
      (cd "$repo" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build -q --release --locked -p tinkerbell-tink-worker --bin tink-worker --target $target)
    fi
    worker="${CARGO_TARGET_DIR:-$repo/target}/$target/release/tink-worker"
  else
    worker_note="services/tink/worker has no tink-worker binary yet"
  fi
fi
if [ -n "$worker" ]; then
  [ -f "$worker" ] || die "--worker $worker: no such file"
  cp "$worker" "$stage/usr/bin/tink-worker"
  chmod 0755 "$stage/usr/bin/tink-worker"
  if head -c 4 "$worker" | grep -q ELF && command -v file >/dev/null && file -L "$worker" | grep -q 'dynamically linked'; then
    echo "build.sh: WARNING: $worker is dynamically linked; the initramfs has no libc" >&2
  fi
  say "worker: $worker ($(stat -c %s "$worker") bytes)"
else
  [ -n "$worker_note" ] || worker_note="--no-worker"
  echo "build.sh: WARNING: building WITHOUT a worker ($worker_note); the init will report 'no worker binary'" >&2
fi

# --- manifest, pack -----------------------------------------------------------------------------
{
  echo "kernel $kpkg=$kver ($abi)"
  echo "busybox-static=$bbver"
  for p in "${!pin[@]}"; do case $p in firmware-*) echo "$p=$(resolve "$p" 2>/dev/null || true)";; esac; done
  echo "worker ${worker:-none}"
} | sort > "$stage/etc/hookos/manifest"

# zstd -9: 7.1 MB in ~2 s here, against gzip -6's 8.3 MB in ~5 s; the kernel has RD_ZSTD.
compress() { if command -v zstd >/dev/null; then zstd -q -9 -c; else gzip -n -6; fi; }
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 1)}
find "$stage" -exec touch -h -d "@$epoch" {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) \
  | compress > "$out/initramfs-x86_64.tmp"
mv "$out/initramfs-x86_64.tmp" "$out/initramfs-x86_64"
cp "$stage/etc/hookos/firmware.missing" "$out/firmware-missing.txt"
cp "$vmlinuz" "$out/vmlinuz-x86_64"
{
  cat "$stage/etc/hookos/manifest"
  cat "$base/.summary"
  (cd "$out" && sha256sum vmlinuz-x86_64 initramfs-x86_64)
} > "$out/manifest.txt"
# The release's checksums (sha256sum format): `tinkerbell hookos fetch` checks downloads against
# it and `serve` checks the directory it serves (a mismatch is reported at start and on /healthz).
(cd "$out" && sha256sum vmlinuz-x86_64 initramfs-x86_64 manifest.txt) > "$out/SHA256SUMS.tmp"
mv "$out/SHA256SUMS.tmp" "$out/SHA256SUMS"
say "done: $out/vmlinuz-x86_64 ($(stat -c %s "$out/vmlinuz-x86_64") bytes), $out/initramfs-x86_64 ($(stat -c %s "$out/initramfs-x86_64") bytes)"
