"""app.oip.tensors: the v2 JSON and binary tensor format, read and written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.oip.tensors import InferRequest, encode_response, parse_request
from core.errors import BadRequest, LimitExceeded


def test_json_tensors_flat_or_nested_are_one_array() -> None:
    flat = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    nested = json.loads(json.dumps(flat))
    nested["inputs"][0]["data"] = [[1, 2], [3, 4]]
    for body in (flat, nested):
        x = parse_request(json.dumps(body).encode(), None, 100).inputs["x"]
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, [[1, 2], [3, 4]])


def test_binary_tensors_are_read_in_input_order_after_the_header() -> None:
    a = np.arange(6, dtype="<i8").reshape(2, 3)
    b = np.array([0.5, -2], dtype="<f4")
    header = {
        "id": "req",
        "inputs": [
            {
                "name": "a",
                "shape": [2, 3],
                "datatype": "INT64",
                "parameters": {"binary_data_size": 48},
            },
            {"name": "j", "shape": [1], "datatype": "UINT8", "data": [7]},
            {"name": "b", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
    }
    head = json.dumps(header).encode()
    request = parse_request(head + a.tobytes() + b.tobytes(), str(len(head)), 100)
    np.testing.assert_array_equal(request.inputs["a"], a)
    np.testing.assert_array_equal(request.inputs["b"], b)
    assert request.inputs["j"].dtype == np.uint8
    assert request.id == "req" and request.outputs == {"y": True, "z": False}


def test_responses_put_binary_outputs_after_the_header() -> None:
    request = InferRequest("r", {}, {"y": True, "z": False}, binary_output=False)
    y = np.arange(4, dtype=np.float32).reshape(2, 2)
    z = np.array([[1], [2]], dtype=np.uint8)
    body, length = encode_response("m.seeded", 3, request, {"y": y, "z": z, "w": y})
    assert length is not None
    header = json.loads(body[:length])
    assert header["model_name"] == "m.seeded" and header["model_version"] == "3"
    assert header["id"] == "r" and [o["name"] for o in header["outputs"]] == ["y", "z"]
    assert header["outputs"][0] == {
        "name": "y",
        "datatype": "FP32",
        "shape": [2, 2],
        "parameters": {"binary_data_size": 16},
    }
    assert header["outputs"][1]["data"] == [1, 2]
    np.testing.assert_array_equal(np.frombuffer(body[length:], "<f4"), y.ravel())
    everything, none = encode_response("m", 1, InferRequest(None, {}, None, False), {"z": z})
    assert none is None and "id" not in json.loads(everything)


@pytest.mark.parametrize(
    ("body", "length"),
    [
        (b'{"inputs": []}', None),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], '
         b'"id": 5}', None),
        (b'{"inputs": [{"name": "x", "shape": ["1"], "datatype": "FP32", "data": [1]}]}', None),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [true]}]}', None),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", '
         b'"parameters": {"shared_memory_region": "r"}}]}', None),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], '
         b'"parameters": {"binary_data_output": 1}}', None),
        (b"{}", "1e3"),
        (b"{}", "9" * 40),
    ],
)  # fmt: skip
def test_malformed_requests_say_what_is_wrong(body: bytes, length: str | None) -> None:
    with pytest.raises(BadRequest) as e:
        parse_request(body, length, 100)
    assert e.value.status == 400 and e.value.detail


def test_a_json_header_of_too_many_values_is_refused_before_parsing() -> None:
    data = list(range(20))
    body = {"inputs": [{"name": "x", "shape": [20], "datatype": "INT64", "data": data}]}
    with pytest.raises(LimitExceeded, match="binary data"):
        parse_request(json.dumps(body).encode(), None, 16)
    assert parse_request(json.dumps(body).encode(), None, 64).inputs["x"].tolist() == data
