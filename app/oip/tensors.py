"""The Open Inference Protocol's tensor format (KServe v2, Triton HTTP): its one owner here.

A request body is a JSON header, then, with the binary tensor data extension, raw tensors: the
header's length is in ``Inference-Header-Content-Length``, and each input whose parameters
carry ``binary_data_size`` takes that many bytes, in input order, from what follows. Tensors
in JSON are a flat or nested list, row-major. Binary tensors are row-major and little-endian.
A response mirrors it: an output asked for in binary (its ``binary_data`` parameter, else the
request's ``binary_data_output``) carries ``binary_data_size`` and its bytes follow the header.

    >>> request = parse_request(body, headers.get("inference-header-content-length"), 10**5)
    >>> request.inputs["z"].shape
    (4, 100)
    >>> body, header_length = encode_response("mnist-gan", 4, request, {"image": images})
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import BadRequest, LimitExceeded

# Numeric datatypes only: BYTES and BF16 have no use in a GAN's tensors.
DATATYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in (
        ("BOOL", "?"),
        ("UINT8", "<u1"),
        ("UINT16", "<u2"),
        ("UINT32", "<u4"),
        ("UINT64", "<u8"),
        ("INT8", "<i1"),
        ("INT16", "<i2"),
        ("INT32", "<i4"),
        ("INT64", "<i8"),
        ("FP16", "<f2"),
        ("FP32", "<f4"),
        ("FP64", "<f8"),
    )
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
# What a JSON list may hold for each datatype, by numpy kind: no strings anywhere, no floats for
# an integer tensor (they would be truncated), numbers for a float one.
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
_LENGTH = re.compile(r"[0-9]{1,18}")


class _Input(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str = Field(min_length=1, max_length=128)
    shape: list[int] = Field(max_length=8)
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class _Output(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str = Field(min_length=1, max_length=128)
    parameters: dict[str, Any] = Field(default_factory=dict)


class _Request(BaseModel):
    model_config = ConfigDict(strict=True)
    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[_Input] = Field(min_length=1, max_length=64)
    outputs: list[_Output] | None = Field(None, max_length=64)


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    # The outputs asked for, each with whether it goes in binary; None: all of them.
    outputs: dict[str, bool] | None
    binary_output: bool  # the request's binary_data_output: the default for every output

    def binary(self, name: str) -> bool:
        return self.binary_output if self.outputs is None else self.outputs[name]


def datatype(array: np.ndarray) -> str:
    """The protocol's name of an array's dtype."""
    return _NAMES[array.dtype.newbyteorder("<")]


def parse_request(body: bytes, header_length: str | None, max_values: int) -> InferRequest:
    """An inference request from its (decompressed) body; BadRequest says what is wrong.

    A JSON header of more than ``max_values`` values is refused before it is parsed, as the
    middleware refuses JSON bodies (parsing holds the GIL, so every request, for its length).
    """
    if header_length is None:
        header, rest = body, b""
    else:
        if not _LENGTH.fullmatch(header_length) or int(header_length) > len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length {header_length[:40]!r} is not a length within "
                f"the body's {len(body)} bytes"
            )
        header, rest = body[: int(header_length)], body[int(header_length) :]
    if header.count(b",") >= max_values:
        raise LimitExceeded(
            f"the JSON header holds over {max_values} values; send large tensors as binary data"
        )
    try:
        request = _Request.model_validate_json(header)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"{where + ': ' if where else ''}{first['msg']}") from None
    parts: list[_Input | _Output] = [*request.inputs, *(request.outputs or [])]
    for part in parts:
        if any(key.startswith("shared_memory") for key in part.parameters):
            raise BadRequest("shared memory is not supported: send tensors in JSON or binary")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in request.inputs:
        if tensor.name in inputs:
            raise BadRequest(f"input {tensor.name!r} is given twice")
        array, offset = _tensor(tensor, rest, offset, header_length is not None)
        inputs[tensor.name] = array
    if offset != len(rest):
        raise BadRequest(
            f"{len(rest) - offset} bytes follow the binary inputs: the body does not match "
            "Inference-Header-Content-Length and the inputs' binary_data_size"
        )
    return InferRequest(
        request.id,
        inputs,
        None if request.outputs is None else _outputs(request.outputs),
        _flag(request.parameters, "binary_data_output", "the request"),
    )


def encode_response(
    model: str, version: int, request: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it."""
    described, blobs = [], []
    for name, array in outputs.items():
        if request.outputs is not None and name not in request.outputs:
            continue
        out: dict[str, Any] = {"name": name, "datatype": datatype(array), "shape": array.shape}
        if request.binary(name):
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            out["data"] = array.ravel().tolist()
        described.append(out)
    response: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = described
    header = json.dumps(response, separators=(",", ":")).encode()
    return header + b"".join(blobs), len(header) if blobs else None


def _tensor(tensor: _Input, rest: bytes, offset: int, has_binary: bool) -> tuple[np.ndarray, int]:
    name = tensor.name
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        known = ", ".join(DATATYPES)
        raise BadRequest(f"input {name!r}: datatype {tensor.datatype!r} is not one of {known}")
    if any(d < 0 for d in tensor.shape):
        raise BadRequest(f"input {name!r}: shape {tensor.shape} has a negative dimension")
    count = math.prod(tensor.shape)  # a Python int: no overflow, whatever the shape claims
    size = tensor.parameters.get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise BadRequest(f"input {name!r} has neither data nor binary_data_size")
        return _from_json(name, tensor.data, dtype, tensor.shape, count), offset
    if not has_binary:
        raise BadRequest(
            f"input {name!r} has binary_data_size but the request no "
            "Inference-Header-Content-Length header"
        )
    if tensor.data is not None:
        raise BadRequest(f"input {name!r} has both data and binary_data_size")
    if not isinstance(size, int) or isinstance(size, bool) or size != count * dtype.itemsize:
        raise BadRequest(
            f"input {name!r}: binary_data_size {size!r}, but {tensor.datatype} "
            f"{tensor.shape} is {count * dtype.itemsize} bytes"
        )
    if offset + size > len(rest):
        raise BadRequest(
            f"input {name!r}: its binary data ends past the body ({len(rest)} bytes follow "
            f"the header, the inputs so far need {offset + size})"
        )
    array = np.frombuffer(rest, dtype=dtype, count=count, offset=offset).reshape(tensor.shape)
    return array, offset + size


def _from_json(
    name: str, data: object, dtype: np.dtype[Any], shape: list[int], count: int
) -> np.ndarray:
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as e:  # a ragged nesting, a huge integer
        raise BadRequest(f"input {name!r}: data is not a (nested) list of numbers: {e}") from None
    if array.size != count:
        raise BadRequest(f"input {name!r}: shape {shape} holds {count} values, data {array.size}")
    if array.size and array.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise BadRequest(f"input {name!r}: data of {_NAMES[dtype]} must be numbers of that type")
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise BadRequest(f"input {name!r}: values outside the range of {_NAMES[dtype]}")
    return array.astype(dtype).reshape(shape)


def _outputs(outputs: list[_Output]) -> dict[str, bool]:
    asked: dict[str, bool] = {}
    for output in outputs:
        if "classification" in output.parameters:
            raise BadRequest("the classification extension is not supported")
        asked[output.name] = _flag(output.parameters, "binary_data", f"output {output.name!r}")
    return asked


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{where}: parameter {key} must be true or false, got {value!r}")
    return value
