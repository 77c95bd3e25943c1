#!/usr/bin/env bash
# Power-on → image written and power-on → booted from disk (metadata read), per machine, for the
# appliance (tests/lab/e2e.sh: rufio, boots, HookOS + tink-worker, image2disk, writefile,
# reboot) against the hand-made baseline of reference/testbed.md R3 (bench/baseline-lab.sh:
# dnsmasq + Python HTTP + a busybox initramfs that streams the image and powers off), in one
# run on this machine. Ratios are ours / baseline for "image written" (the baseline never
# reboots); 4 machines at once are compared with 1.
#
#   bench/e2e.sh            (root; several minutes: QEMU under TCG)
#   FOUR=0 bench/e2e.sh     (skip the 4-machine run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$repo/target/bench-e2e"; mkdir -p "$out"
echo "load: $(uptime)"

echo "== baseline (R3): bios, uefi"
LAB_DIR="$out/baseline" "$here/baseline-lab.sh" bios uefi | tee "$out/baseline.txt"
b_bios=$(sed -n 's/.*bios: PASS in \([0-9.]*\)s.*/\1/p' "$out/baseline.txt")
b_uefi=$(sed -n 's/.*uefi: PASS in \([0-9.]*\)s.*/\1/p' "$out/baseline.txt")

run() {  # run <machines> <file>
  E2E_DIR="$out/e2e-$1" "$repo/tests/lab/e2e.sh" --machines "$1" | tee "$2" | grep -E '^e2e: (lab-|appliance)'
}
echo "== appliance: 1 machine"
run 1 "$out/one.txt"
if [ "${FOUR:-1}" = 1 ]; then
  echo "== appliance: 4 machines at once"
  run 4 "$out/four.txt"
else
  : > "$out/four.txt"
fi

python3 - "$out/one.txt" "$out/four.txt" "${b_bios:-0}" "${b_uefi:-0}" <<'PY'
import re, sys
def parse(p):
    r = {}
    for l in open(p):
        m = re.match(r"e2e: (\S+) (\S+) power-on→image-written ([\d.]+) s power-on→metadata-read ([\d.]+) s", l)
        if m: r[m[1]] = (m[2], float(m[3]), float(m[4]))
    return r
one, four = parse(sys.argv[1]), parse(sys.argv[2])
base = {"bios": float(sys.argv[3]), "uefi": float(sys.argv[4])}
print(f"{'run':<10} {'machine':<8} {'fw':<5} {'written s':>9} {'booted s':>9} {'baseline s':>10} {'ours/base':>9}")
for run, res in (("1 machine", one), ("4 at once", four)):
    for name, (fw, w, b) in sorted(res.items()):
        ratio = w / base[fw] if base[fw] else float("nan")
        print(f"{run:<10} {name:<8} {fw:<5} {w:>9.1f} {b:>9.1f} {base[fw]:>10.1f} {ratio:>9.2f}")
if one and four:
    single = one["lab-m1"][1]
    worst = max(w for _, w, _ in four.values())
    print(f"4 machines vs 1: slowest written {worst:.1f} s / {single:.1f} s = {worst / single:.2f}x")
PY
