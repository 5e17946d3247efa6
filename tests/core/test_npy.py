"""core.npy: untrusted .npy headers are checked before any data is read or allocated."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from core import npy


def forged(header: str | dict[str, object], data: bytes = b"") -> bytes:
    """A version 1.0 .npy file with any header text, padded as numpy pads it."""
    text = (header if isinstance(header, str) else repr(header)).encode("latin-1")
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _dict(descr: object, shape: object) -> dict[str, object]:
    return {"descr": descr, "fortran_order": False, "shape": shape}


def test_a_real_array_round_trips_with_its_offset() -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    buf = io.BytesIO()
    np.save(buf, arr)
    fp = io.BytesIO(buf.getvalue())
    header = npy.read_header(fp)
    assert (header.shape, header.dtype, header.nbytes) == ((2, 3, 4), np.uint8, 24)
    assert header.offset == len(buf.getvalue()) - 24
    out = npy.read_data(fp, header)
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 9  # writable, as np.load's arrays are


def test_fortran_order_is_kept() -> None:
    arr = np.asfortranarray(np.arange(6, dtype="<i4").reshape(2, 3))
    buf = io.BytesIO()
    np.save(buf, arr)
    fp = io.BytesIO(buf.getvalue())
    np.testing.assert_array_equal(npy.read_data(fp, npy.read_header(fp)), arr)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (forged(_dict("|u1", (0, 10**30))), "absurd"),  # numpy: OverflowError
        (forged(_dict("|u1", (2**40, 2**40, 0))), "absurd"),  # numpy: cannot reshape
        (forged(_dict("|u1", (1,) * 9)), "at most 8 dims"),
        (forged(_dict("|u1", (-1, 28))), "not an array shape"),
        (forged(_dict("|u1", (True,))), "not an array shape"),
        (forged(_dict("|O", (1,))), "Python objects"),
        (forged(_dict([("a", "<f8", (10,))], (1,))), "plain numbers"),
        (forged(_dict("<U8", (1,))), "plain numbers"),
        (forged(_dict("<M8[s]", (1,))), "plain numbers"),
        (forged(_dict("|V99999999999999999999", (1,))), "not a valid .npy"),
        (forged("{" + "(" * 5000), "not a valid .npy"),
        (
            forged("{'descr': '|u1', 'fortran_order': False, 'shape': (1,), 'x': __import__}"),
            "not a valid",
        ),
        (b"\x93NUMPY\x09\x00", "not a valid .npy"),
        (b"\x93NUMPY\x01", "not a valid .npy"),
        (b"PK\x03\x04", "not a valid .npy"),
    ],
)
def test_hostile_headers_are_npy_errors(data: bytes, words: str) -> None:
    with pytest.raises(npy.NpyError, match=words):
        npy.read_header(io.BytesIO(data))


def test_a_header_declaring_a_terabyte_is_read_without_allocating_it() -> None:
    header = npy.read_header(io.BytesIO(forged(_dict("<f8", (2**17, 2**20)))))
    assert header.nbytes == 2**40  # the caller weighs this against its limit


def test_truncated_data_is_an_npy_error() -> None:
    fp = io.BytesIO(forged(_dict("|u1", (10,)), b"\x00" * 4))
    header = npy.read_header(fp)
    with pytest.raises(npy.NpyError, match="truncated: 4 of 10"):
        npy.read_data(fp, header)
