"""Each endpoint described once: the request, how to parse its answer, and when to retry.

``GanClient`` and ``AsyncGanClient`` (``client.py``) differ only in how they send a ``Call``
and how they sleep between attempts.
"""

from __future__ import annotations

import email.utils
import io
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from gan_client.errors import ERRORS, GanError, NotFoundError, UnreachableError

T = TypeVar("T")
Labels = int | Sequence[int] | np.ndarray | None
Version = int | str | None
Samples = tuple[np.ndarray, np.ndarray | None]
Scores = list[tuple[float, float]]
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
    headers: dict[str, str] | None = None
    idempotent: bool = True

    def send_args(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.path,
            "json": self.json,
            "params": self.params,
            "content": self.content,
            "headers": self.headers,
        }


def finish(call: Call[T], response: httpx.Response) -> T:
    if response.is_error:
        raise _problem(response)
    return call.parse(response)


def _problem(response: httpx.Response) -> GanError:
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


def _npy(response: httpx.Response) -> np.ndarray:
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def parse_json(response: httpx.Response) -> Any:
    return response.json()


def parse_samples(response: httpx.Response) -> Samples:
    header = response.headers.get("x-labels")
    labels = None if header is None else np.array(header.split(","), dtype=np.int64)
    return _npy(response), labels


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
    images: np.ndarray, labels: Labels, model: str | None, version: Version
) -> Call[Scores]:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(images), allow_pickle=False)
    label_list = _label_json(labels)
    if isinstance(label_list, int):
        label_list = [label_list] * len(images)
    params = _compact(
        model=model,
        version=None if version is None else str(version),
        labels=None if label_list is None else ",".join(map(str, label_list)),
    )
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
    from_seed: int | None,
    to_seed: int | None,
    from_latent: Sequence[float] | np.ndarray | None,
    to_latent: Sequence[float] | np.ndarray | None,
    steps: int,
    method: str,
    label: int | None,
    model: str | None,
    version: Version,
) -> Call[np.ndarray]:
    body = _compact(
        model=model,
        version=version,
        steps=steps,
        method=method,
        label=label,
        format="npy",
    )
    body["from"] = _endpoint(from_seed, from_latent)
    body["to"] = _endpoint(to_seed, to_latent)
    return Call("POST", "/v1/interpolate", _npy, json=body)


def model_call(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/models/{quote(name, safe='')}", parse_json)


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
) -> Call[dict[str, Any]]:
    body = _compact(
        model=model,
        preset=preset,
        overrides=overrides or {},
        base_version=base_version,
        dataset=dataset,
        promote=promote,
    )
    # Not idempotent: a resent submission whose first copy arrived would queue a second job.
    return Call("POST", "/v1/jobs", parse_json, json=body, idempotent=False)


def job_call(method: str, job_id: str) -> Call[dict[str, Any]]:
    return Call(method, f"/v1/jobs/{quote(job_id, safe='')}", parse_json)


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
