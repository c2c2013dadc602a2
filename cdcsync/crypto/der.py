"""Minimal DER (X.690) encoding and strict parsing: what SM2 keys, signatures, ciphertexts and
certificates need, plus the two SM2 key structures (SubjectPublicKeyInfo and PKCS#8).

Kept apart from ``sm2`` (the curve arithmetic) and ``keys`` (PEM files) so that both use it without
importing each other. The parser is strict (minimal lengths, minimal non-negative integers) so one
signature has exactly one accepted encoding.
"""

from __future__ import annotations

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2 = "1.2.156.10197.1.301"




def der_tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + content


def der_int(v: int) -> bytes:
    if v < 0:
        raise ValueError("negative DER INTEGER not supported")
    return der_tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def der_seq(*items: bytes) -> bytes:
    return der_tlv(0x30, b"".join(items))


def der_octets(b: bytes) -> bytes:
    return der_tlv(0x04, b)


def der_bits(b: bytes) -> bytes:
    return der_tlv(0x03, b"\x00" + b)


def der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for v in parts[2:]:
        chunk = [v & 0x7F]
        v >>= 7
        while v:
            chunk.append(0x80 | (v & 0x7F))
            v >>= 7
        body += bytes(reversed(chunk))
    return der_tlv(0x06, bytes(body))


class DerError(ValueError):
    pass


def der_read(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Read one TLV at `pos`: (tag, content, position after it)."""
    if pos + 2 > len(data):
        raise DerError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte DER tags not supported")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        nbytes = first & 0x7F
        if nbytes == 0 or nbytes > 4 or pos + nbytes > len(data):
            raise DerError("bad DER length")
        length = int.from_bytes(data[pos : pos + nbytes], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("non-minimal DER length")
        pos += nbytes
    end = pos + length
    if end > len(data):
        raise DerError("truncated DER")
    return tag, data[pos:end], end


def der_items(content: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(content):
        tag, c, pos = der_read(content, pos)
        out.append((tag, c))
    return out


def der_parse_one(data: bytes, tag: int) -> bytes:
    t, content, end = der_read(data)
    if t != tag or end != len(data):
        raise DerError(f"expected a single DER element with tag 0x{tag:02x}")
    return content


def der_parse_int(content: bytes) -> int:
    if not content:
        raise DerError("empty DER INTEGER")
    if content[0] & 0x80:
        raise DerError("negative DER INTEGER")
    if len(content) > 1 and content[0] == 0 and not content[1] & 0x80:
        raise DerError("non-minimal DER INTEGER")
    return int.from_bytes(content, "big")


def der_parse_oid(content: bytes) -> str:
    if not content:
        raise DerError("empty OID")
    parts = [content[0] // 40, content[0] % 40] if content[0] < 80 else [2, content[0] - 80]
    v = 0
    for byte in content[1:]:
        v = (v << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(v)
            v = 0
    return ".".join(str(p) for p in parts)


# --------------------------------------------------------------------------- SM2 key structures

# AlgorithmIdentifier { id-ecPublicKey, sm2 }: what OpenSSL 3 writes for SM2 keys.
SM2_ALG_ID = der_seq(der_oid(OID_EC_PUBLIC_KEY), der_oid(OID_SM2))


def spki_der(point: bytes) -> bytes:
    """SubjectPublicKeyInfo DER of an SM2 public key given as a SEC1 point (04||x||y)."""
    return der_seq(SM2_ALG_ID, der_bits(point))


def pkcs8_private_key_der(d: int, point: bytes) -> bytes:
    """PKCS#8 PrivateKeyInfo DER (same layout as OpenSSL 3) of the private scalar ``d``."""
    ec = der_seq(der_int(1), der_octets(d.to_bytes(32, "big")), der_tlv(0xA1, der_bits(point)))
    return der_seq(der_int(0), SM2_ALG_ID, der_octets(ec))
