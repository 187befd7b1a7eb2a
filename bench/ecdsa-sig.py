#!/usr/bin/env python3
"""ECDSA signatures between openssl's DER and JOSE's fixed-size r || s (RFC 7518 3.4).

  ecdsa-sig.py der2jose SIZE   stdin: DER signatures back to back (openssl dgst -sign);
                               stdout: one base64url (no padding) r || s per line
  ecdsa-sig.py jose2der SIZE   stdin: one base64url r || s; stdout: its DER signature
SIZE is the byte length of r and of s (32 for P-256). Standard library only.
"""
import base64
import sys


def der_signatures(data):
    at = 0
    while at < len(data):
        if data[at] != 0x30:
            raise SystemExit(f"not a DER SEQUENCE at byte {at}")
        length, at = data[at + 1], at + 2
        if length & 0x80:  # long form (P-521); P-256 and P-384 never need it
            n = length & 0x7F
            length, at = int.from_bytes(data[at:at + n], "big"), at + n
        body, at = data[at:at + length], at + length
        ints = []
        pos = 0
        for _ in range(2):
            if body[pos] != 0x02:
                raise SystemExit("not a DER INTEGER")
            n = body[pos + 1]
            ints.append(int.from_bytes(body[pos + 2:pos + 2 + n], "big"))
            pos += 2 + n
        yield ints


def der_integer(value):
    raw = value.to_bytes((value.bit_length() + 8) // 8 or 1, "big")
    return b"\x02" + bytes([len(raw)]) + raw


def main():
    mode, size = sys.argv[1], int(sys.argv[2])
    if mode == "der2jose":
        out = sys.stdout
        for r, s in der_signatures(sys.stdin.buffer.read()):
            raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
            out.write(base64.urlsafe_b64encode(raw).decode().rstrip("=") + "\n")
    elif mode == "jose2der":
        text = sys.stdin.read().strip()
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        r, s = int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
        body = der_integer(r) + der_integer(s)
        sys.stdout.buffer.write(b"\x30" + bytes([len(body)]) + body)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
