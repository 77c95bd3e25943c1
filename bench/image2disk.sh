#!/usr/bin/env bash
# image2disk benchmark (issue 7): a raw image of SIZE_MIB (default 2048) — alternating 64 MiB
# runs of random data and zeroes, so half is zero — compressed with zstd, gzip and xz, served
# by nginx on 127.0.0.1, written into a fresh file by
#   ours:     tink-worker --run-action image2disk (SPARSE=false: every byte written; and the
#             default SPARSE=true: zero blocks skipped)
#   pipeline: curl -s URL | <decompressor> -d | dd of=TARGET bs=4M   (as the issue states, and
#             with conv=fsync, since image2disk always fsyncs)
# in the same run, RUNS times (default 3) interleaved. Prints the median seconds, MB/s of image
# written, peak RSS (/usr/bin/time -v, max over the processes and runs) and the ratios
# ours/pipeline of the medians. BASELINE_BIN=path adds another tink-worker (e.g. an older
# build) as base-full/base-sparse to the same interleaving; FORMATS="zstd gzip xz" picks formats.
# xz uses XZ_SIZE_MIB (default 512) because compressing 2 GiB of random data with xz takes
# minutes on 2 cores (GZ_SIZE_MIB likewise for gzip). Usage: bench/image2disk.sh   (env: SIZE_MIB,
# XZ_SIZE_MIB, PORT, WORK, RUNS, FORMATS, BASELINE_BIN, TINK_WORKER_BIN to use an existing binary
# instead of building the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${SIZE_MIB:-2048}
gz_size=${GZ_SIZE_MIB:-$size}
xz_size=${XZ_SIZE_MIB:-512}
port=${PORT:-18090}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
for tool in curl zstd gzip xz dd "$nginx" /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh" >&2; exit 1; }
done
# WORK=dir keeps the prepared images there between runs (PREPARE_ONLY=1 just prepares them).
if [ -n "${WORK:-}" ]; then work=$WORK; keep=1; else work=$(mktemp -d -p "${TMPDIR:-/var/tmp}"); keep=0; fi
mkdir -p "$work/www" "$work/nginx"
trap '[ -f "$work/nginx/pid" ] && kill "$(cat "$work/nginx/pid")" 2>/dev/null; rm -f "$work/target.img"; [ $keep = 1 ] || rm -rf "$work"' EXIT

make_image() { # $1 = MiB, $2 = output
  local mib=$1 out=$2 i
  head -c 64M /dev/urandom > "$work/rand64"
  : > "$out"
  for ((i = 0; i < mib / 128; i++)); do
    # a different random run each time: rotate the 64 MiB block by i MiB
    { tail -c +$((i * 1048576 + 1)) "$work/rand64"; head -c $((i * 1048576)) "$work/rand64"; } >> "$out"
    head -c 64M /dev/zero >> "$out"
  done
  rm -f "$work/rand64"
}

prepare() { # ext, MiB, compress command (stdin → stdout); sets $sum
  local ext=$1 mib=$2 cmd=$3 f="$work/www/img-$2.raw.$1"
  if [ ! -f "$f.sha256" ]; then
    echo "== preparing a $mib MiB image (half random, half zero) as .$ext"
    [ -f "$work/img-$mib.raw" ] || make_image "$mib" "$work/img-$mib.raw"
    $cmd < "$work/img-$mib.raw" > "$f"
    sha256sum < "$work/img-$mib.raw" | cut -d' ' -f1 > "$f.sha256"
  fi
  sum=$(cat "$f.sha256")
}
prepare zst "$size" "zstd -q -T2 -3 -c"; sum_zst=$sum
prepare gz "$gz_size" "gzip -1 -c"; sum_gz=$sum
prepare xz "$xz_size" "xz -0 -T2 -c"; sum_xz=$sum
rm -f "$work"/img-*.raw
ls -l "$work/www"
[ -z "${PREPARE_ONLY:-}" ] || exit 0

if [ -n "${TINK_WORKER_BIN:-}" ]; then
  bin=$TINK_WORKER_BIN   # e.g. the static build (services/tink/worker/README.md)
else
  cargo build --release -p tinkerbell-tink-worker -q
  bin="${CARGO_TARGET_DIR:-target}/release/tink-worker"
fi

cat > "$work/nginx/nginx.conf" <<NGX
daemon on;
pid $work/nginx/pid;
error_log $work/nginx/error.log;
worker_processes 1;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$port; root $work/www; }
}
NGX
"$nginx" -c "$work/nginx/nginx.conf"
# warm the page cache for the sources (both sides read them from RAM)
cat "$work/www/"* > /dev/null

target="$work/target.img"
runs=${RUNS:-3}
declare -A secs rss
run() { # name, expected sha, command...  (appends this run's seconds to secs[name])
  local name=$1 sum=$2; shift 2
  rm -f "$target"; sync
  local t0 t1 r
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$work/time.txt" "$@" > /dev/null 2> "$work/err.txt" || { cat "$work/err.txt" >&2; exit 1; }
  t1=$(date +%s.%N)
  secs[$name]="${secs[$name]:-} $(echo "$t1 - $t0" | bc -l)"
  r=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time.txt")
  [ "${rss[$name]:-0}" -ge "$r" ] || rss[$name]=$r
  local got; got=$(sha256sum < "$target" | cut -d' ' -f1)
  [ "$got" = "$sum" ] || { echo "$name: output differs from the image" >&2; exit 1; }
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

ratio() { echo "scale=2; $1 / $2" | bc -l; }
report() { # format, MiB, names...
  local f=$1 mib=$2 n; shift 2
  local mb; mb=$(echo "$mib * 1.048576" | bc -l)
  declare -A med
  printf '%-28s %8s %9s %10s   %s\n' "[$f, $mib MiB]" "median s" "MB/s" "peakRSS" "runs (s)"
  for n in "$@"; do
    med[$n]=$(median "${secs[$n]}")
    printf '%-28s %8.2f %9.0f %8d KiB  %s\n' "$n" "${med[$n]}" "$(echo "$mb / ${med[$n]}" | bc -l)" "${rss[$n]}" "${secs[$n]}"
  done
  for n in "$@"; do
    case $n in ours-*|base-*) ;; *) continue ;; esac
    echo "  ratio $n/pipeline  $(ratio "${med[pipe-$f]}" "${med[$n]}")x  (vs conv=fsync: $(ratio "${med[pipe-fsync-$f]}" "${med[$n]}")x)"
  done
}

bench_format() { # format, file, decompress command, MiB, sha
  local f=$1 file=$2 dec=$3 mib=$4 sum=$5 url="http://127.0.0.1:$port/$2" i b names
  names=("pipe-$f" "pipe-fsync-$f" "ours-full-$f" "ours-sparse-$f")
  [ -z "${BASELINE_BIN:-}" ] || names+=("base-full-$f" "base-sparse-$f")
  for ((i = 0; i < runs; i++)); do
    run "pipe-$f" "$sum" sh -c "curl -s $url | $dec | dd of=$target bs=4M status=none"
    run "ours-full-$f" "$sum" "$bin" --log-level warn --run-action image2disk --env "IMG_URL=$url" \
      --env "DEST_DISK=$target" --env COMPRESSED=true --env SPARSE=false
    run "pipe-fsync-$f" "$sum" sh -c "curl -s $url | $dec | dd of=$target bs=4M conv=fsync status=none"
    run "ours-sparse-$f" "$sum" "$bin" --log-level warn --run-action image2disk --env "IMG_URL=$url" \
      --env "DEST_DISK=$target" --env COMPRESSED=true
    if [ -n "${BASELINE_BIN:-}" ]; then
      for b in full sparse; do
        run "base-$b-$f" "$sum" "$BASELINE_BIN" --log-level warn --run-action image2disk \
          --env "IMG_URL=$url" --env "DEST_DISK=$target" --env COMPRESSED=true \
          --env "SPARSE=$([ $b = full ] && echo false || echo true)"
      done
    fi
  done
  report "$f" "$mib" "${names[@]}"
}

echo "== $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $runs runs per side, interleaved"
for f in ${FORMATS:-zstd gzip xz}; do
  case $f in
    zstd) bench_format zstd "img-$size.raw.zst" "zstd -d -c" "$size" "$sum_zst" ;;
    gzip) bench_format gzip "img-$gz_size.raw.gz" "gzip -d -c" "$gz_size" "$sum_gz" ;;
    xz) bench_format xz "img-$xz_size.raw.xz" "xz -d -c" "$xz_size" "$sum_xz" ;;
    *) echo "unknown format $f" >&2; exit 2 ;;
  esac
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
