"""app.oip.compression: request bodies inflated within a bound, response codings chosen."""

from __future__ import annotations

import gzip
import zlib

import pytest

from app.oip.compression import accepted, compress, decompress
from core.errors import BadRequest, LimitExceeded, UnsupportedMediaType


def test_round_trips_at_and_past_the_limit() -> None:
    data = b"0123456789" * 100
    for coding in ("gzip", "deflate"):
        assert decompress(compress(data, coding), coding, limit=len(data)) == data
        with pytest.raises(LimitExceeded):
            decompress(compress(data, coding), coding, limit=len(data) - 1)
    assert decompress(data, "identity", limit=1) == data  # the raw body's limit is elsewhere
    assert gzip.decompress(compress(data, "gzip")) == zlib.decompress(compress(data, "deflate"))


def test_a_bomb_stops_at_the_limit() -> None:
    bomb = zlib.compress(b"\0" * (64 * 1024 * 1024), 9)  # 64 MB in about 64 kB
    with pytest.raises(LimitExceeded, match="over 1024 bytes"):
        decompress(bomb, "deflate", limit=1024)


def test_broken_bodies_and_unknown_codings() -> None:
    packed = gzip.compress(b"{}")
    for body in (packed[:-3], packed + b"x", b"plain"):
        with pytest.raises(BadRequest):
            decompress(body, "gzip", limit=1024)
    with pytest.raises(UnsupportedMediaType):
        decompress(packed, "gzip, br", limit=1024)


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip;q=0, deflate;q=0.5", "deflate"),
        ("br, deflate , gzip;q=0.1", "gzip"),
        ("identity", None),
        ("", None),
        ("gzip;q=nonsense", None),
    ],
)
def test_the_coding_answered_in(header: str, coding: str | None) -> None:
    assert accepted(header) == coding
