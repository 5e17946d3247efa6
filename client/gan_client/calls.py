"""Each endpoint described once: the request, how to parse its answer, and when to retry.

``GanClient`` (``client.py``) and ``AsyncGanClient`` (``async_client.py``) differ only in how
they send a ``Call`` and how they sleep between attempts.
"""

from __future__ import annotations

import email.utils
import io
import random
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from gan_client.errors import ERRORS, GanError, NotFoundError, UnreachableError

T = TypeVar("T")
Labels = int | Sequence[int] | np.ndarray | None
# A uint8 [N, H, W, C] array, or encoded image files (PNG, JPEG, WebP) for the server to decode.
Images = np.ndarray | Sequence[bytes]
Version = int | str | None
Samples = tuple[np.ndarray, np.ndarray | None]
Scores = list[tuple[float, float]]
Files = list[tuple[str, tuple[str, bytes, str]]]  # multipart: (field, (filename, data, type))
# The jobs API's terminal states, restated so that the client needs no server code.
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
USER_AGENT = "gan-serve-client/0.1.0"


# The request never reached the server, so even a call that must not run twice can be repeated.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The connection broke after the request went out: repeat only what is safe to run twice.
_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


# --- requests and responses, shared by both clients ----------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, and how to turn its successful response into a result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, str] | None = None
    content: bytes | None = None
    data: dict[str, str] | None = None  # multipart text fields, beside files
    files: Files | None = None
    headers: dict[str, str] | None = None
    idempotent: bool = True

    def send_args(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.path,
            "json": self.json,
            "params": self.params,
            "content": self.content,
            "data": self.data,
            "files": self.files,
            "headers": self.headers,
        }


def finish(call: Call[T], response: httpx.Response) -> T:
    if response.is_error:
        raise problem(response)
    return call.parse(response)


def problem(response: httpx.Response) -> GanError:
    """The typed error of an error answer, carrying its problem+json detail."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    status = response.status_code
    return ERRORS.get(status, GanError)(
        status,
        str(body.get("title") or response.reason_phrase),
        str(body.get("detail") or response.text or response.reason_phrase),
        body.get("field"),
        body,
    )


def parse_npy(response: httpx.Response) -> np.ndarray:
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def parse_json(response: httpx.Response) -> Any:
    return response.json()


def parse_bytes(response: httpx.Response) -> bytes:
    return response.content


def parse_samples(response: httpx.Response) -> Samples:
    header = response.headers.get("x-labels")
    labels = None if header is None else np.array(header.split(","), dtype=np.int64)
    return parse_npy(response), labels


def _scores(response: httpx.Response) -> Scores:
    return [(r["probability_real"], r["logit"]) for r in response.json()["results"]]


def served(response: httpx.Response) -> tuple[str, int]:
    return response.headers["x-model"], int(response.headers["x-model-version"])


def _compact(**fields: Any) -> dict[str, Any]:
    """A JSON body without the fields left unset, so the server's defaults apply."""
    return {k: v for k, v in fields.items() if v is not None}


def _label_json(labels: Labels) -> int | list[int] | None:
    if labels is None:
        return None
    if isinstance(labels, int | np.integer):
        return int(labels)
    return [int(x) for x in labels]


def sample_call(
    fmt: str,
    parse: Callable[[httpx.Response], T],
    n: int,
    seed: int | None,
    labels: Labels,
    truncation: float | None,
    model: str | None,
    version: Version,
    cols: int | None = None,
    latents: Sequence[Sequence[float]] | np.ndarray | None = None,
) -> Call[T]:
    vectors = None if latents is None else [[float(v) for v in row] for row in latents]
    body = _compact(
        model=model,
        version=version,
        n=None if vectors is not None else n,  # one image per latent
        seed=seed,
        latents=vectors,
        labels=_label_json(labels),
        truncation=truncation,
        cols=cols,
        format=fmt,
    )
    return Call("POST", "/v1/sample", parse, json=body)


def discriminate_call(
    images: Images, labels: Labels, model: str | None, version: Version, resize: bool
) -> Call[Scores]:
    label_list = _label_json(labels)
    if isinstance(label_list, int):
        label_list = [label_list] * len(images)
    params = _compact(
        model=model,
        version=None if version is None else str(version),
        labels=None if label_list is None else ",".join(map(str, label_list)),
        resize="true" if resize else None,
    )
    if not isinstance(images, np.ndarray):  # files: multipart, decoded by the server
        files = [
            ("images", (f"image-{i}", blob, "application/octet-stream"))
            for i, blob in enumerate(images)
        ]
        return Call("POST", "/v1/discriminate", _scores, params=params, files=files)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(images), allow_pickle=False)
    return Call(
        "POST",
        "/v1/discriminate",
        _scores,
        params=params,
        content=buf.getvalue(),
        headers={"content-type": "application/x-npy"},
    )


def _endpoint(seed: int | None, latent: Sequence[float] | np.ndarray | None) -> dict[str, Any]:
    return _compact(seed=seed, latent=None if latent is None else [float(v) for v in latent])


def interpolate_call(
    fmt: str,
    parse: Callable[[httpx.Response], T],
    from_seed: int | None,
    to_seed: int | None,
    from_latent: Sequence[float] | np.ndarray | None,
    to_latent: Sequence[float] | np.ndarray | None,
    steps: int,
    method: str,
    label: int | None,
    model: str | None,
    version: Version,
) -> Call[T]:
    body = _compact(
        model=model,
        version=version,
        steps=steps,
        method=method,
        label=label,
        format=fmt,
    )
    body["from"] = _endpoint(from_seed, from_latent)
    body["to"] = _endpoint(to_seed, to_latent)
    return Call("POST", "/v1/interpolate", parse, json=body)


def model_call(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/models/{_segment(name)}", parse_json)


def alias_call(model: str, alias: str, version: int) -> Call[dict[str, Any]]:
    path = f"/v1/models/{_segment(model)}/aliases/{_segment(alias)}"
    return Call("PUT", path, parse_json, json={"version": version})


def upload_call(path: Path, name: str | None) -> Call[dict[str, Any]]:
    """A dataset upload: a .zip of class folders or an .npz as it is, a folder zipped here."""
    if path.is_dir():
        filename, data = f"{path.name}.zip", _zipped(path)
    else:
        filename, data = path.name, path.read_bytes()
    files: Files = [("file", (filename, data, "application/octet-stream"))]
    form = _compact(name=name)
    # Not idempotent: every upload is stored under a new id.
    return Call("POST", "/v1/datasets", parse_json, data=form, files=files, idempotent=False)


def _zipped(folder: Path) -> bytes:
    """``<class>/<image>`` files of ``folder`` as the zip the server takes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
    return buf.getvalue()


def manifest_of(detail: dict[str, Any], version: int) -> dict[str, Any]:
    for manifest in detail["versions"]:
        if manifest["version"] == version:
            return dict(manifest)
    raise NotFoundError(404, "not found", f"{detail['name']} has no version {version}")


def jobs_call(state: str | None, limit: int, offset: int) -> Call[dict[str, Any]]:
    params = _compact(state=state, limit=str(limit), offset=str(offset))
    return Call("GET", "/v1/jobs", parse_json, params=params)


def submit_call(
    model: str,
    preset: str,
    overrides: dict[str, Any] | None,
    base_version: int | None,
    dataset: str | None,
    promote: str,
    promote_on: Sequence[str] | None,
) -> Call[dict[str, Any]]:
    body = _compact(
        model=model,
        preset=preset,
        overrides=overrides or {},
        base_version=base_version,
        dataset=dataset,
        promote=promote,
        promote_on=None if promote_on is None else list(promote_on),
    )
    # Not idempotent: a resent submission whose first copy arrived would queue a second job.
    return Call("POST", "/v1/jobs", parse_json, json=body, idempotent=False)


def export_call(
    model: str,
    n: int,
    version: Version,
    seed: int,
    label: int | None,
    label_mix: Sequence[float] | None,
    truncation: float | None,
    format: str,
    shard_size: int | None,
) -> Call[dict[str, Any]]:
    body = _compact(
        model=model,
        n=n,
        version=version,
        seed=seed,
        label=label,
        label_mix=None if label_mix is None else [float(w) for w in label_mix],
        truncation=truncation,
        format=format,
        shard_size=shard_size,
    )
    # Not idempotent, like a job submission: a resent one could queue a second export.
    return Call("POST", "/v1/exports", parse_json, json=body, idempotent=False)


def export_delete_call(job_id: str) -> Call[None]:
    # Sent once: a resent delete whose first copy arrived would be a 404.
    path = f"/v1/exports/{_segment(job_id)}"
    return Call("DELETE", path, lambda r: None, idempotent=False)


def export_manifest_call(job_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/exports/{_segment(job_id)}/manifest.json", parse_json)


def job_call(method: str, job_id: str, action: str = "") -> Call[dict[str, Any]]:
    """``method`` on a job, or on one of its actions (``resume``)."""
    path = f"{job_path(job_id)}/{action}" if action else job_path(job_id)
    # A resume resent after its first copy arrived would be a 409: sent once.
    return Call(method, path, parse_json, idempotent=method != "POST")


def job_log_call(job_id: str) -> Call[str]:
    return Call("GET", f"{job_path(job_id)}/log", lambda r: r.text)


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{_segment(job_id)}"


def _segment(value: str) -> str:
    """One path segment, escaped: a name holding "/" or "?" cannot reach another route."""
    return quote(value, safe="")


def poll_delay(record: dict[str, Any], deadline: float | None, poll: float) -> float | None:
    """None once the job has ended; else how long to sleep before asking again."""
    if record["state"] in TERMINAL_STATES:
        return None
    if deadline is None:
        return poll
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"job {record['id']} is still {record['state']}")
    return min(poll, left)


# --- retries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """When to try a call again, and how long to wait first."""

    retries: int
    base_s: float = 0.1
    cap_s: float = 10.0

    def after(
        self, call: Call[Any], attempt: int, outcome: httpx.Response | httpx.TransportError
    ) -> httpx.Response | float:
        """The final response, or the seconds to sleep before attempt ``attempt + 1``.

        Raises UnreachableError for a transport error that must not or cannot be retried.
        """
        if isinstance(outcome, httpx.Response):
            if outcome.status_code != 503 or attempt >= self.retries:
                return outcome
            return self.delay(attempt, _retry_after(outcome))
        retryable = isinstance(outcome, _NOT_SENT) or (
            call.idempotent and isinstance(outcome, _DROPPED)
        )
        if not retryable or attempt >= self.retries:
            detail = f"{call.method} {outcome.request.url}: {type(outcome).__name__}: {outcome}"
            raise UnreachableError(None, "no response", detail) from outcome
        return self.delay(attempt, None)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # The server said when it expects room: not sooner (unless that is past cap_s, which
            # bounds every wait), and a little jitter later so clients turned away together do
            # not all return in the same instant.
            return min(retry_after, self.cap_s) + random.uniform(0, self.base_s)
        ceiling = min(self.cap_s, self.base_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the other form RFC 9110 allows: an HTTP date
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def default_headers(api_key: str | None) -> dict[str, str]:
    headers = {"user-agent": USER_AGENT}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers
