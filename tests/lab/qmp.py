#!/usr/bin/env python3
"""Sets device boot indexes of a paused lab machine over QMP, then resumes it.

usage: qmp.py SOCKET [DEVICE_ID=BOOTINDEX ...]

Why: an IPMI boot override without "persistent" is for the next boot only, so a machine told
"bootdev pxe" netboots once and then, when the installed OS or the worker's reboot action
resets it, boots its default order again (disk first here). QEMU keeps the order it was
started with across guest resets, so the chassis hook (tests/lab/lab.sh) starts the machine
paused (-S) with the NIC first and has this script move the NIC behind the disk before the
first instruction runs. The firmware reads QEMU's `bootorder` file, which QEMU rebuilds only
at a reset: this boot still netboots, every later reset boots the disk.

Assignments apply in order and each index must be free when it is set, so swap through a
spare index (nic0=3 disk0=1 nic0=2). Exits non-zero with QMP's error on any failure.
"""
import json
import socket
import sys
import time


def main():
    path, specs = sys.argv[1], sys.argv[2:]
    s = socket.socket(socket.AF_UNIX)
    deadline = time.monotonic() + 10
    while True:
        try:
            s.connect(path)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    f = s.makefile("rw")

    def reply():
        while True:
            line = f.readline()
            if not line:
                sys.exit("qmp: connection closed")
            m = json.loads(line)
            if "event" not in m:
                return m

    def cmd(name, **args):
        f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        f.flush()
        r = reply()
        if "error" in r:
            sys.exit(f"qmp {name} {args}: {r['error'].get('desc', r['error'])}")
        return r.get("return")

    reply()  # greeting
    cmd("qmp_capabilities")
    for spec in specs:
        dev, _, idx = spec.partition("=")
        cmd("qom-set", path=f"/machine/peripheral/{dev}", property="bootindex", value=int(idx))
    cmd("cont")


if __name__ == "__main__":
    main()
