"""KServe's own v2 client (``kserve.InferenceRESTClient``), unmodified, against a server.

Run by tests/app/oip/test_kserve_client.py with the interpreter of the venv that holds kserve
(``make kserve-client``: its pins conflict with ours, so it lives apart). Reads a JSON spec on
stdin (the server's URL, models to check, calls to make with npy-encoded inputs) and prints
what the client answered, outputs npy-encoded, as JSON.
"""

import asyncio
import base64
import io
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

DATATYPES = {"float32": "FP32", "int64": "INT64"}


def _array(text):
    return np.load(io.BytesIO(base64.b64decode(text)))


def _text(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return base64.b64encode(buf.getvalue()).decode()


async def main(spec):
    url = spec["url"]
    async with InferenceRESTClient(RESTConfig(protocol="v2", retries=0)) as client:
        answer = {
            "live": await client.is_server_live(url),
            "ready": await client.is_server_ready(url),
            "models": {m: await client.is_model_ready(url, m) for m in spec["models"]},
            "results": [],
        }
        for call in spec["calls"]:
            inputs = []
            for name, text in call["inputs"].items():
                array = _array(text)
                tensor = InferInput(name, list(array.shape), DATATYPES[array.dtype.name])
                tensor.set_data_from_numpy(array, binary_data=call["binary"])
                inputs.append(tensor)
            request = InferRequest(call["model"], infer_inputs=inputs, request_id=call["id"])
            response = await client.infer(url, request, model_name=call["model"])
            answer["results"].append(
                {
                    "id": response.id,
                    "model": response.model_name,
                    "outputs": {o.name: _text(o.as_numpy()) for o in response.outputs},
                }
            )
    return answer


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.load(sys.stdin)))))
