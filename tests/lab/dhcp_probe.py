#!/usr/bin/env python3
"""Watch a DHCP handoff from one server to another, as a machine on the wire sees it.

    dhcp_probe.py --iface IF --mac MAC --from-server IP --to-server IP --ready-file PATH
                  --stop-file PATH [--interval-ms 10] [--max-seconds 120] [--json PATH]

Sends a DHCPDISCOVER for MAC (broadcast flag set, a new xid each time) out of IF every
--interval-ms and collects every DHCPOFFER by its server identifier (option 54). Creates
--ready-file once --from-server has answered 5 times (start the move then); stops when
--stop-file exists and --to-server has answered 20 times (or after --max-seconds), and then
judges the handoff tests/lab/move.sh makes with `tinkerbell move`:

* no DISCOVER is ever answered by both servers (two servers must never answer one machine);
* the answers go from --from-server only, through (at most) a stretch of unanswered DISCOVERs,
  to --to-server only: the source never answers again once the target has;
* both servers answered at least once (else the probe proved nothing).

Prints the longest stretch with no answer: the time from the last DISCOVER answered before it
to the first answered after it, an upper bound of the real window at the probe's resolution
(the real one is at least that minus two intervals). Exit status 1 when a rule is broken.
Used inside a network namespace on the lab bridge; it only speaks on IF.
"""

import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import time

MAGIC = b"\x63\x82\x53\x63"


def discover(xid: int, mac: bytes) -> bytes:
    head = struct.pack("!BBBBIHH4s4s4s4s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4), bytes(4))
    chaddr = mac + bytes(10)
    opts = bytes([53, 1, 1, 55, 3, 1, 3, 6, 255])
    return head + chaddr + bytes(64 + 128) + MAGIC + opts


def parse(pkt: bytes):
    """(xid, message type, server identifier) of a BOOTREPLY, or None."""
    if len(pkt) < 240 or pkt[0] != 2 or pkt[236:240] != MAGIC:
        return None
    xid = struct.unpack("!I", pkt[4:8])[0]
    mtype, server, i = None, None, 240
    while i < len(pkt):
        code = pkt[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(pkt):
            break
        n = pkt[i + 1]
        val = pkt[i + 2 : i + 2 + n]
        if code == 53 and n == 1:
            mtype = val[0]
        elif code == 54 and n == 4:
            server = socket.inet_ntoa(val)
        i += 2 + n
    return xid, mtype, server


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--mac", required=True)
    ap.add_argument("--from-server", required=True)
    ap.add_argument("--to-server", required=True)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--json", help="write every probe and answer here")
    a = ap.parse_args()
    try:
        mac = bytes.fromhex(a.mac.replace(":", ""))
        assert len(mac) == 6
    except (ValueError, AssertionError):
        print(f"dhcp_probe: --mac: not a MAC address: {a.mac}", file=sys.stderr)
        return 2

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, a.iface.encode())
    s.bind(("0.0.0.0", 68))

    sent = {}  # xid -> monotonic send time
    answers = {}  # xid -> set of servers
    others = 0
    interval = a.interval_ms / 1000.0
    t0 = time.monotonic()
    next_send = t0
    stop_at = None
    ready = False
    count = {a.from_server: 0, a.to_server: 0}
    while True:
        now = time.monotonic()
        if not ready and count[a.from_server] >= 5:
            open(a.ready_file, "w").close()
            ready = True
        done = os.path.exists(a.stop_file) and count[a.to_server] >= 20
        if stop_at is None and (done or now - t0 > a.max_seconds):
            stop_at = now + 0.5  # late answers still count
        if stop_at is not None and now >= stop_at:
            break
        if stop_at is None and now >= next_send:
            xid = random.getrandbits(32)
            while xid in sent:
                xid = random.getrandbits(32)
            s.sendto(discover(xid, mac), ("255.255.255.255", 67))
            sent[xid] = time.monotonic()
            next_send += interval
            if next_send < now:
                next_send = now + interval
        wait = max(0.0, (stop_at if stop_at is not None else next_send) - time.monotonic())
        r, _, _ = select.select([s], [], [], wait)
        if r:
            pkt, _ = s.recvfrom(2048)
            p = parse(pkt)
            if p is None:
                continue
            xid, mtype, server = p
            if xid in sent and mtype == 2 and server:
                answers.setdefault(xid, set()).add(server)
                if server in count:
                    count[server] += 1
            else:
                others += 1

    order = sorted(sent.items(), key=lambda kv: kv[1])
    seq = [(t - t0, answers.get(x, set())) for x, t in order]
    if a.json:
        with open(a.json, "w") as f:
            json.dump([{"t": t, "servers": sorted(srv)} for t, srv in seq], f)

    problems = []
    both = [t for t, srv in seq if len(srv) > 1]
    if both:
        problems.append(f"{len(both)} DISCOVERs answered by two servers (first at +{both[0]:.3f} s)")
    strangers = sorted({x for _, srv in seq for x in srv} - {a.from_server, a.to_server})
    if strangers:
        problems.append(f"answers from unexpected servers {strangers}")
    from_t = [t for t, srv in seq if a.from_server in srv]
    to_t = [t for t, srv in seq if a.to_server in srv]
    if not from_t:
        problems.append(f"{a.from_server} never answered (start the probe before the move)")
    if not to_t:
        problems.append(f"{a.to_server} never answered")
    if from_t and to_t and max(from_t) > min(to_t):
        problems.append(
            f"{a.from_server} answered at +{max(from_t):.3f} s, after {a.to_server} first did at +{min(to_t):.3f} s"
        )

    answered = [t for t, srv in seq if srv]
    gap, gap_at = 0.0, None
    for prev, cur in zip(answered, answered[1:]):
        if cur - prev > gap:
            gap, gap_at = cur - prev, prev
    print(
        f"dhcp_probe: {len(seq)} DISCOVERs every {a.interval_ms:g} ms over {seq[-1][0] if seq else 0:.2f} s: "
        f"{len(from_t)} answered by {a.from_server}, {len(to_t)} by {a.to_server}, "
        f"{len(seq) - len(answered)} by none, {len(both)} by both; "
        f"last {a.from_server} answer at +{max(from_t) if from_t else float('nan'):.3f} s, "
        f"first {a.to_server} answer at +{min(to_t) if to_t else float('nan'):.3f} s "
        f"(handoff gap {(min(to_t) - max(from_t)) * 1000 if from_t and to_t else float('nan'):.1f} ms); "
        f"longest stretch with no server {gap * 1000:.1f} ms"
        + (f" (from +{gap_at:.3f} s)" if gap_at is not None else "")
    )
    if others:
        print(f"dhcp_probe: {others} other packets on port 68 ignored")
    for p in problems:
        print(f"dhcp_probe: FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
