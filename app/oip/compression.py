"""gzip and deflate bodies for the inference protocol (Content-Encoding, Accept-Encoding).

"deflate" is the zlib format, as HTTP defines it and tritonclient sends it. A request body is
inflated into at most ``limit`` bytes, checked as it grows, so a small bomb never becomes a
large allocation.

    >>> decompress(gzip.compress(b"{}"), "gzip", limit=1024)
    b'{}'
    >>> coding = accepted("gzip;q=0.5, deflate")  # "gzip"
"""

from __future__ import annotations

import gzip
import zlib

from core.errors import BadRequest, LimitExceeded, UnsupportedMediaType

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
LEVEL = 6  # zlib's default: most of level 9's ratio at a fraction of its time


def decompress(body: bytes, coding: str, limit: int) -> bytes:
    """``body`` as sent before ``coding`` (a Content-Encoding value), at most ``limit`` bytes."""
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return body
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise UnsupportedMediaType(f"Content-Encoding {coding[:40]!r}: send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    data = body
    try:
        while data and not inflater.eof:
            out += inflater.decompress(data, limit + 1 - len(out))  # never past the limit
            if len(out) > limit:
                raise LimitExceeded(f"the request body inflates to over {limit} bytes")
            data = inflater.unconsumed_tail
    except zlib.error as e:
        raise BadRequest(f"the {coding} request body is corrupt: {e}") from None
    if not inflater.eof:
        raise BadRequest(f"the {coding} request body ends early")
    if inflater.unused_data:
        raise BadRequest(f"bytes follow the end of the {coding} request body")
    return bytes(out)


def accepted(accept_encoding: str) -> str | None:
    """The coding to answer in, gzip before deflate, when the client accepts one (q > 0)."""
    offered: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        q = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        offered[coding.strip()] = q
    return next((c for c in ("gzip", "deflate") if offered.get(c, 0.0) > 0), None)


def compress(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body, compresslevel=LEVEL, mtime=0)
    return zlib.compress(body, LEVEL)
