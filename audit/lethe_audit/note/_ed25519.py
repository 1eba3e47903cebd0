"""Ed25519 public key screening (RFC 8032 §5.1.3 decoding plus a subgroup check).

OpenSSL accepts any 32 bytes as an Ed25519 public key. A trust anchor must be a real key: a
canonical encoding of a point on the curve that lies in the prime-order subgroup. Small-order
points (the 8 points of order 1, 2, 4 or 8) let one signature verify for many messages under
cofactorless verification, and points with a torsion component verify differently under
cofactored and cofactorless rules; an honest key ``a * B`` is never either. Pure integer
arithmetic on public data: no secrets, so no constant-time concerns.
"""

from __future__ import annotations

P = 2**255 - 19
#: Order of the prime-order subgroup (the base point's order).
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)

# Extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z.
_Point = tuple[int, int, int, int]
_IDENTITY: _Point = (0, 1, 1, 0)


def _add(p: _Point, q: _Point) -> _Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(k: int, p: _Point) -> _Point:
    out = _IDENTITY
    while k:
        if k & 1:
            out = _add(out, p)
        p = _add(p, p)
        k >>= 1
    return out


def _is_identity(p: _Point) -> bool:
    x, y, z, _t = p
    return x % P == 0 and (y - z) % P == 0


def decode_point(raw: bytes) -> _Point | None:
    """The point a 32-byte encoding names, or None if it is not a canonical encoding of a
    point on the curve (RFC 8032 §5.1.3, with ``y < p`` and no ``x = 0`` with sign bit 1)."""
    if len(raw) != 32:
        return None
    n = int.from_bytes(raw, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * _SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def encode_point(p: _Point) -> bytes:
    """The canonical 32-byte encoding of a point."""
    x, y, z, _t = p
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def add_points(a: bytes, b: bytes) -> bytes:
    """The encoding of the sum of two encoded points (for building test keys)."""
    pa, pb = decode_point(a), decode_point(b)
    if pa is None or pb is None:
        raise ValueError("not a point encoding")
    return encode_point(_add(pa, pb))


def key_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not an acceptable Ed25519 public key, or None if it is one."""
    p = decode_point(raw)
    if p is None:
        return "it is not a canonical encoding of a point on the curve"
    if _is_identity(_mul(8, p)):
        return "it is a small-order point (order 1, 2, 4 or 8): it would accept forged signatures"
    if not _is_identity(_mul(L, p)):
        return "it is not in the prime-order subgroup (it has a small-order component)"
    return None
