#!/usr/bin/env python3
"""Couples sushy-tools' fake Redfish driver to the lab's QEMU machines (tests/lab/lab.sh).

sushy-emulator (fake driver, external_notifier) PUTs a system's JSON here on every change.
A pending power change is applied through the same chassis hook ipmi_sim uses
(m<i>/chassis.sh), so Redfish and IPMI drive one and the same QEMU process. Acting on
`pending_power` rather than `power_state` matters: the later "applied" notification must not
restart a machine that has powered itself off meanwhile (reference testbed.md R5c).

usage: redfish_notifier.py STATE_DIR BIND_ADDR PORT
"""
import http.server, json, subprocess, sys, time

state, bind, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = open(f"{state}/redfish/notifier.log", "a", buffering=1)
last_boot = {}


def hook(machine, *args):
    subprocess.run([f"{state}/{machine}/chassis.sh", "0x20", "set", *args], check=False)


class H(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()
        try:
            system = json.loads(body)
        except ValueError:
            return
        machine = system.get("name", "").removeprefix("lab-")
        boot = system.get("boot_device")
        if boot and last_boot.get(machine) != boot:
            last_boot[machine] = boot
            hook(machine, "boot", "pxe" if boot == "Pxe" else "default")
        pending = system.get("pending_power") or {}
        want = pending.get("power_state", "")
        if want == "On":
            hook(machine, "power", "1")
        elif want == "Off":
            hook(machine, "power", "0")
        elif "Restart" in want:
            hook(machine, "reset", "1")
        log.write(f"{time.time():.3f} {machine} boot={boot} pending={want or '-'}\n")

    def log_message(self, *a):
        pass


http.server.ThreadingHTTPServer((bind, port), H).serve_forever()
