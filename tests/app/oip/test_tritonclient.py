"""app.oip through the unmodified tritonclient[http], in binary and in JSON mode, against a real
server: health, metadata, configuration, and inference of all three kinds of model, whose
outputs equal ONNX Runtime run here (generator, discriminator) and /v1/sample's npy (seeded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.app.helpers import npy
from tests.conftest import Server

BINARY = pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])


@pytest.fixture
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(f"127.0.0.1:{server.port}") as c:
        yield c


def _input(name: str, array: np.ndarray, binary: bool) -> triton.InferInput:
    datatypes = {np.float32: "FP32", np.float64: "FP64", np.int64: "INT64"}
    tensor = triton.InferInput(name, list(array.shape), datatypes[array.dtype.type])
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _infer(
    client: triton.InferenceServerClient, model: str, binary: bool, **inputs: np.ndarray
) -> triton.InferResult:
    output = "logit" if model.endswith(".discriminator") else "image"
    return client.infer(
        model,
        [_input(name, array, binary) for name, array in inputs.items()],
        outputs=[triton.InferRequestedOutput(output, binary_data=binary)],
    )


def _onnx(repo: Path, name: str, role: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(repo / name / "1" / f"{role}.onnx"))
    return session.run(None, feeds)[0]


def test_health_server_metadata_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "gan-serve" and "binary_tensor_data" in meta["extensions"]
    for name in ("tiny-cgan", "tiny-cgan.discriminator", "tiny-cgan.seeded", "tiny-gan.seeded"):
        assert client.is_model_ready(name) and client.is_model_ready(name, "1")
    assert not client.is_model_ready("tiny-cgan", "2")
    assert not client.is_model_ready("nope")


def test_model_metadata_and_configuration(client: triton.InferenceServerClient) -> None:
    g = client.get_model_metadata("tiny-cgan")
    assert g["versions"] == ["1"]
    assert g["inputs"] == [
        {"name": "z", "datatype": "FP32", "shape": [-1, 8]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    assert g["outputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    d = client.get_model_metadata("tiny-gan.discriminator", "1")
    assert d["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert d["outputs"] == [{"name": "logit", "datatype": "FP32", "shape": [-1, 1]}]
    s = client.get_model_metadata("tiny-gan.seeded")
    assert [i["name"] for i in s["inputs"]] == ["seed", "truncation"]
    assert s["outputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}]
    config = client.get_model_config("tiny-cgan.seeded")
    assert config["max_batch_size"] == 1024
    assert config["output"] == [{"name": "image", "data_type": "TYPE_UINT8", "dims": [28, 28, 1]}]
    with pytest.raises(InferenceServerException) as missing:
        client.get_model_metadata("tiny-cgan.nope")
    assert missing.value.status() == "404" and "no model named" in missing.value.message()


@BINARY
@pytest.mark.parametrize("name", ["tiny-gan", "tiny-cgan"])
def test_generator_equals_onnx_runtime(
    client: triton.InferenceServerClient, template_repo: Path, name: str, binary: bool
) -> None:
    z = np.random.default_rng(1).standard_normal((5, 8), dtype=np.float32)
    feeds = {"z": z}
    if name == "tiny-cgan":
        feeds["label"] = np.array([0, 3, 9, 3, 1], dtype=np.int64)
    image = _infer(client, name, binary, **feeds).as_numpy("image")
    assert image.dtype == np.float32 and image.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(image, _onnx(template_repo, name, "generator", feeds))


@BINARY
@pytest.mark.parametrize("name", ["tiny-gan", "tiny-cgan"])
def test_discriminator_equals_onnx_runtime(
    client: triton.InferenceServerClient, template_repo: Path, name: str, binary: bool
) -> None:
    images = np.random.default_rng(2).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)
    feeds = {"image": images}
    if name == "tiny-cgan":
        feeds["label"] = np.array([7, 7, 2, 0], dtype=np.int64)
    logit = _infer(client, f"{name}.discriminator", binary, **feeds).as_numpy("logit")
    assert logit.shape == (4, 1)
    np.testing.assert_array_equal(logit, _onnx(template_repo, name, "discriminator", feeds))


@BINARY
def test_seeded_equals_v1_sample_npy(
    client: triton.InferenceServerClient, server: Server, binary: bool
) -> None:
    seeds = np.array([40, 41, 7, 2**40], dtype=np.int64)
    body = {"model": "tiny-cgan", "seeds": seeds.tolist(), "format": "npy"}
    default = _infer(client, "tiny-cgan.seeded", binary, seed=seeds).as_numpy("image")
    np.testing.assert_array_equal(default, npy(httpx.post(f"{server.url}/v1/sample", json=body)))
    labels = np.array([1, 1, 5, 9], dtype=np.int64)
    truncation = np.full(4, 0.5, dtype=np.float32)  # exactly 0.5 in float32 and in JSON
    chosen = _infer(
        client, "tiny-cgan.seeded", binary, seed=seeds, label=labels, truncation=truncation
    ).as_numpy("image")
    v1 = {**body, "labels": labels.tolist(), "truncation": 0.5}
    expected = npy(httpx.post(f"{server.url}/v1/sample", json=v1))
    assert chosen.dtype == np.uint8 and chosen.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(chosen, expected)
    assert not np.array_equal(chosen, default)


def test_compression_request_ids_and_versions(client: triton.InferenceServerClient) -> None:
    seeds = np.arange(6, dtype=np.int64)
    inputs = [_input("seed", seeds, True)]
    plain = client.infer("tiny-gan.seeded", inputs).as_numpy("image")
    for request, response in (("gzip", "deflate"), ("deflate", "gzip")):
        result = client.infer(
            "tiny-gan.seeded",
            inputs,
            model_version="latest",
            request_id=f"r-{request}",
            request_compression_algorithm=request,
            response_compression_algorithm=response,
        )
        assert result.get_response()["id"] == f"r-{request}"
        assert result.get_response()["model_version"] == "1"
        np.testing.assert_array_equal(result.as_numpy("image"), plain)


def test_bad_requests_are_client_errors_with_a_message(
    client: triton.InferenceServerClient,
) -> None:
    cases = [
        ("tiny-gan", {"z": np.zeros((2, 7), dtype=np.float32)}, "400", "shape [-1, 8]"),
        ("tiny-gan", {"z": np.zeros((2, 8), dtype=np.float64)}, "400", "must be FP32"),
        ("tiny-gan", {"z": np.full((1, 8), np.nan, dtype=np.float32)}, "400", "NaN"),
        ("tiny-cgan", {"z": np.zeros((2, 8), dtype=np.float32)}, "400", "needs input 'label'"),
        ("tiny-cgan.seeded", {"seed": np.array([-1], dtype=np.int64)}, "400", "0 or more"),
        ("tiny-gan.seeded", {"seed": np.zeros(1025, dtype=np.int64)}, "413", "over the limit"),
        ("tiny-gan.nope", {"seed": np.zeros(1, dtype=np.int64)}, "404", "no model named"),
    ]
    for model, inputs, status, message in cases:
        with pytest.raises(InferenceServerException) as e:
            client.infer(model, [_input(k, v, True) for k, v in inputs.items()])
        assert e.value.status() == status, (model, e.value)
        assert message in e.value.message(), (model, e.value)
