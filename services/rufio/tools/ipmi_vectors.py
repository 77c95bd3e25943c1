#!/usr/bin/env python3
"""Known-answer vectors for src/ipmi/packet/tests.rs, computed independently of the Rust
code from the IPMI v2.0 formulas (sections 13.20-13.32) with Python's hmac/hashlib and
AES-CBC from `openssl enc`. Run: python3 services/rufio/tools/ipmi_vectors.py"""
import hashlib, hmac, struct, subprocess

def H(alg, key, data):
    return hmac.new(key, data, alg).digest()

def aes_cbc(key, iv, data):
    return subprocess.run(["openssl", "enc", "-aes-128-cbc", "-nopad", "-K", key.hex(), "-iv", iv.hex()],
                          input=data, capture_output=True, check=True).stdout

kuid = b"password"
user = b"admin"
sidm = 0x11223344          # console session id
sidc = 0xa1b2c3d4          # BMC session id
rm = bytes(range(16))
rc = bytes(range(0x10, 0x20))
guid = bytes(range(0xa0, 0xb0))
role = 0x14                # administrator | name-only lookup
le = lambda v: struct.pack("<I", v)

for name, alg, tl in (("suite 3 (SHA1)", hashlib.sha1, 12), ("suite 17 (SHA256)", hashlib.sha256, 16)):
    rakp2 = H(alg, kuid, le(sidm) + le(sidc) + rm + rc + guid + bytes([role, len(user)]) + user)
    rakp3 = H(alg, kuid, rc + le(sidm) + bytes([role, len(user)]) + user)
    sik = H(alg, kuid, rm + rc + bytes([role, len(user)]) + user)
    rakp4 = H(alg, sik, rm + le(sidc) + guid)[:tl]
    k1 = H(alg, sik, b"\x01" * 20)
    k2 = H(alg, sik, b"\x02" * 20)
    # A Get Chassis Status request (rqSeq 5) sealed with seq 7 and a fixed IV.
    msg = bytes([0x20, 0x00 << 2]); msg += bytes([(-sum(msg)) & 0xff])
    tail = bytes([0x81, 5 << 2, 0x01]); msg += tail + bytes([(-sum(tail)) & 0xff])
    pad = (16 - (len(msg) + 1) % 16) % 16
    plain = msg + bytes(range(1, pad + 1)) + bytes([pad])
    iv = bytes([0x5a] * 16)
    body = iv + aes_cbc(k2[:16], iv, plain)
    pkt = bytes([6, 0, 0xff, 7, 6, 0xc0]) + le(sidc) + le(7) + struct.pack("<H", len(body)) + body
    ipad = (4 - (len(pkt) - 4 + 2) % 4) % 4
    pkt += b"\xff" * ipad + bytes([ipad, 7])
    pkt += H(alg, k1, pkt[4:])[:tl]
    print(name)
    for k, v in (("rakp2", rakp2), ("rakp3", rakp3), ("sik", sik), ("rakp4", rakp4), ("k1", k1), ("k2", k2), ("packet", pkt)):
        print(f"  {k} = {v.hex()}")
