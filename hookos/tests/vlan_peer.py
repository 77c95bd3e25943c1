#!/usr/bin/env python3
"""Test peer on the far side of a tap for HookOS's VLAN path (hookos/test.sh only).

The host kernel of our CI machines has no 802.1Q support, so the test cannot put an address on
a VLAN interface. This peer stands in for one: on a raw socket bound to the tap it answers ARP
for its address on one VLAN and writes every UDP datagram to port 514 on that VLAN to a file,
as "<time> <src ip> <payload>". The kernel moves a received frame's tag into PACKET_AUXDATA,
so the VLAN is read from there; replies are sent tagged.

usage: vlan_peer.py IFACE VLAN_ID MY_IP OUT_FILE
"""
import socket, struct, sys, time

iface, vid, my_ip, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ETH_P_ALL, SOL_PACKET, PACKET_AUXDATA, TP_STATUS_VLAN_VALID = 0x0003, 263, 8, 0x10
my_ip_b = socket.inet_aton(my_ip)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
s.bind((iface, 0))
my_mac = s.getsockname()[4]
out = open(out_path, "a", buffering=1)
print("listening", flush=True)

def frame_vlan(data, anc):
    """Returns (vlan id or None, ethertype, payload) of a received frame."""
    for level, kind, cdata in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= 20:
            status, _, _, _, _, tci = struct.unpack("IIIHHH", cdata[:18])
            if status & TP_STATUS_VLAN_VALID:
                return tci & 0xFFF, struct.unpack("!H", data[12:14])[0], data[14:]
    etype = struct.unpack("!H", data[12:14])[0]
    if etype == 0x8100:  # tag left in place (no offload)
        tci, inner = struct.unpack("!HH", data[14:18])
        return tci & 0xFFF, inner, data[18:]
    return None, etype, data[14:]

while True:
    data, anc, _, _ = s.recvmsg(65535, socket.CMSG_SPACE(32))
    if len(data) < 14 or data[6:12] == my_mac:
        continue
    v, etype, p = frame_vlan(data, anc)
    if v != vid:
        continue
    src_mac = data[6:12]
    if etype == 0x0806 and len(p) >= 28 and p[6:8] == b"\x00\x01" and p[24:28] == my_ip_b:
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, my_mac, my_ip_b, p[8:14], p[14:18])
        s.send(src_mac + my_mac + struct.pack("!HH", 0x8100, vid) + struct.pack("!H", 0x0806) + arp)
    elif etype == 0x0800 and len(p) >= 28 and p[9] == 17 and p[16:20] == my_ip_b:
        ihl = (p[0] & 0x0F) * 4
        dport = struct.unpack("!H", p[ihl + 2:ihl + 4])[0]
        if dport == 514:
            msg = p[ihl + 8:].decode(errors="replace").rstrip()
            out.write(f"{time.time():.3f} {socket.inet_ntoa(p[12:16])} {msg}\n")
