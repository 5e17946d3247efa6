"""Untrusted .npy arrays (NEP 1): the header is read and checked before any data is.

numpy's own reader trusts the header it parses: it allocates what the shape declares before
reading a byte of data (a 28-byte header can ask for terabytes) and fails on absurd shapes with
OverflowError or ValueError from deep inside. Every .npy from outside (a ``/v1/discriminate``
body, each member of an uploaded npz) goes through :func:`read_header`, so its caller can
weigh ``header.nbytes`` against its limits, and then through :func:`read_data`, which reads
exactly that many bytes. Pickles and object arrays are never loaded: only plain numbers are.

    >>> header = read_header(io.BytesIO(data))
    >>> header.shape, header.dtype.str, header.nbytes
    ((2, 28, 28, 1), '|u1', 1568)
    >>> images = read_data(io.BytesIO(data[header.offset:]), header)
"""

from __future__ import annotations

import math
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

MAX_NDIM = 8  # an image batch has 4; numpy stops at 64
NUMBER_KINDS = "biufc"  # bool, signed, unsigned, float, complex: no objects, strings, records
_MAX_ELEMENTS = 2**48  # no real array is larger; numpy overflows on larger shapes, even empty


class NpyError(ValueError):
    """Bytes that are not a plain numeric .npy array."""


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # where the data starts, from the start of the file

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def read_header(fp: IO[bytes]) -> NpyHeader:
    """The header of the .npy file ``fp`` is at the start of; NpyError for anything else.

    Refused: other magic or versions, malformed headers, dtypes other than plain numbers
    (objects and pickles among them), negative dimensions, more than MAX_NDIM dimensions, and
    shapes numpy could not index even when one dimension is zero.
    """
    start = fp.tell()
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise NpyError(f"npy format version {version[0]}.{version[1]} is not supported")
    # What numpy's header parser raises on a forged header, beyond ValueError.
    except (ValueError, OverflowError, TypeError, SyntaxError, EOFError, RecursionError,
            tokenize.TokenError) as e:  # fmt: skip
        raise NpyError(f"not a valid .npy file: {e}") from e
    if dtype.hasobject:
        raise NpyError("npy arrays of Python objects are refused: send plain numbers")
    if dtype.kind not in NUMBER_KINDS or dtype.subdtype is not None:
        raise NpyError(f"npy dtype {dtype} is refused: send plain numbers (uint8 for images)")
    dims = list(shape)
    if len(dims) > MAX_NDIM or any(type(d) is not int or d < 0 for d in dims):
        raise NpyError(f"npy shape {_shown(dims)} is not an array shape of at most {MAX_NDIM} dims")
    if math.prod(max(d, 1) for d in dims) > _MAX_ELEMENTS:
        raise NpyError(f"npy shape {_shown(dims)} is absurd")
    return NpyHeader(tuple(dims), dtype, bool(fortran_order), fp.tell() - start)


def read_data(fp: IO[bytes], header: NpyHeader) -> np.ndarray:
    """The array ``header`` declares, read from ``fp`` (placed at its data): writable, exactly
    ``header.nbytes`` allocated, NpyError when fewer bytes follow."""
    buf = bytearray(header.nbytes)
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        chunk = fp.read(min(len(buf) - got, 1 << 20))
        if not chunk:
            raise NpyError(f"npy data is truncated: {got} of {len(buf)} bytes")
        view[got : got + len(chunk)] = chunk
        got += len(chunk)
    flat = np.frombuffer(buf, dtype=header.dtype)
    return flat.reshape(header.shape, order="F" if header.fortran_order else "C")


def _shown(dims: Sequence[object]) -> str:
    text = str(dims)
    return text if len(text) <= 80 else text[:80] + "...]"
