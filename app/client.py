"""A Python client for gan-serve, sync and async, with retries and typed errors.

Needs numpy and httpx only (never torch or FastAPI), so any program can draw images::

    with GanClient("http://127.0.0.1:8000") as gan:
        images, labels = gan.sample(16, seed=7, labels=3, model="mnist-cdcgan")
        images.shape, labels[:3]          # (16, 28, 28, 1) uint8, array([3, 3, 3])

Both clients retry a 503 (the server's batch queue is full) and a connection that failed,
with exponential backoff and jitter, waiting what ``Retry-After`` asks (up to 10 s); a 4xx is
the caller's to fix and is raised at once. Every failure is a ``GanError`` carrying the server's
``application/problem+json`` detail::

    GanError                  status, title, detail, field, problem (the whole body)
    ├── InvalidRequestError   400, 413, 415, 422: a bad field, a limit, a media type
    ├── AuthError             401, 403: an admin route without the right key
    ├── NotFoundError         404: unknown model, version, alias or job
    ├── RateLimitedError      429: too many queued jobs
    ├── OverloadedError       503, still after every retry
    └── UnreachableError      no response at all (status None), after every retry

Each endpoint is described once, as a ``_Call`` (the request, and how to parse its answer);
``GanClient`` and ``AsyncGanClient`` differ only in how they send it and how they sleep.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

__all__ = [
    "AsyncGanClient",
    "AuthError",
    "GanClient",
    "GanError",
    "InvalidRequestError",
    "NotFoundError",
    "OverloadedError",
    "RateLimitedError",
    "UnreachableError",
]

T = TypeVar("T")
Labels = int | Sequence[int] | np.ndarray | None
Version = int | str | None
Samples = tuple[np.ndarray, np.ndarray | None]
Scores = list[tuple[float, float]]
# The jobs API's terminal states (app.jobs.TERMINAL), restated so the client needs no server code.
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
USER_AGENT = "gan-serve-client/0.1.0"


class GanError(Exception):
    """An error answer from gan-serve (or none at all), with its problem+json detail.

    Example::

        try:
            gan.sample(5000)
        except InvalidRequestError as e:
            print(e.status, e.field, e.detail)   # 413 n n=5000 is over the limit of 1024
    """

    def __init__(
        self,
        status: int | None,
        title: str,
        detail: str,
        field: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        where = f" (field {field})" if field else ""
        super().__init__(f"{'' if status is None else f'{status} '}{title}: {detail}{where}")
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.problem = problem or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the fields, not the message, so errors survive pickling (multiprocessing).
        return (type(self), (self.status, self.title, self.detail, self.field, self.problem))


class InvalidRequestError(GanError):
    """400, 413, 415 or 422: the request asked for something the server refuses."""


class AuthError(GanError):
    """401 or 403: an admin route needs ``api_key``."""


class NotFoundError(GanError):
    """404: no such model, version, alias or job."""


class RateLimitedError(GanError):
    """429: over a count limit (queued jobs); not retried, since waiting may not help."""


class OverloadedError(GanError):
    """503 on every attempt: the server's queue stayed full."""


class UnreachableError(GanError):
    """No response: the connection was refused, dropped or timed out (``status`` is None)."""


_ERRORS: dict[int, type[GanError]] = {
    400: InvalidRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitedError,
    503: OverloadedError,
}
# The request never reached the server, so even a call that must not run twice can be repeated.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The connection broke after the request went out: repeat only what is safe to run twice.
_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


# --- requests and responses, shared by both clients ----------------------------------------


@dataclass(frozen=True)
class _Call(Generic[T]):
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


def _finish(call: _Call[T], response: httpx.Response) -> T:
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
    return _ERRORS.get(status, GanError)(
        status,
        str(body.get("title") or response.reason_phrase),
        str(body.get("detail") or response.text or response.reason_phrase),
        body.get("field"),
        body,
    )


def _npy(response: httpx.Response) -> np.ndarray:
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def _json(response: httpx.Response) -> Any:
    return response.json()


def _samples(response: httpx.Response) -> Samples:
    header = response.headers.get("x-labels")
    labels = None if header is None else np.array(header.split(","), dtype=np.int64)
    return _npy(response), labels


def _scores(response: httpx.Response) -> Scores:
    return [(r["probability_real"], r["logit"]) for r in response.json()["results"]]


def _served(response: httpx.Response) -> tuple[str, int]:
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


def _sample_call(
    fmt: str,
    parse: Callable[[httpx.Response], T],
    n: int,
    seed: int | None,
    labels: Labels,
    truncation: float | None,
    model: str | None,
    version: Version,
    cols: int | None = None,
) -> _Call[T]:
    body = _compact(
        model=model,
        version=version,
        n=n,
        seed=seed,
        labels=_label_json(labels),
        truncation=truncation,
        cols=cols,
        format=fmt,
    )
    return _Call("POST", "/v1/sample", parse, json=body)


def _discriminate_call(
    images: np.ndarray, labels: Labels, model: str | None, version: Version
) -> _Call[Scores]:
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
    return _Call(
        "POST",
        "/v1/discriminate",
        _scores,
        params=params,
        content=buf.getvalue(),
        headers={"content-type": "application/x-npy"},
    )


def _endpoint(seed: int | None, latent: Sequence[float] | np.ndarray | None) -> dict[str, Any]:
    return _compact(seed=seed, latent=None if latent is None else [float(v) for v in latent])


def _interpolate_call(
    from_seed: int | None,
    to_seed: int | None,
    from_latent: Sequence[float] | np.ndarray | None,
    to_latent: Sequence[float] | np.ndarray | None,
    steps: int,
    method: str,
    label: int | None,
    model: str | None,
    version: Version,
) -> _Call[np.ndarray]:
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
    return _Call("POST", "/v1/interpolate", _npy, json=body)


def _model_call(name: str) -> _Call[dict[str, Any]]:
    return _Call("GET", f"/v1/models/{quote(name, safe='')}", _json)


def _manifest(detail: dict[str, Any], version: int) -> dict[str, Any]:
    for manifest in detail["versions"]:
        if manifest["version"] == version:
            return dict(manifest)
    raise NotFoundError(404, "not found", f"{detail['name']} has no version {version}")


def _jobs_call(state: str | None, limit: int, offset: int) -> _Call[dict[str, Any]]:
    params = _compact(state=state, limit=str(limit), offset=str(offset))
    return _Call("GET", "/v1/jobs", _json, params=params)


def _submit_call(
    model: str,
    preset: str,
    overrides: dict[str, Any] | None,
    base_version: int | None,
    dataset: str | None,
    promote: str,
) -> _Call[dict[str, Any]]:
    body = _compact(
        model=model,
        preset=preset,
        overrides=overrides or {},
        base_version=base_version,
        dataset=dataset,
        promote=promote,
    )
    # Not idempotent: a resent submission whose first copy arrived would queue a second job.
    return _Call("POST", "/v1/jobs", _json, json=body, idempotent=False)


def _job_call(method: str, job_id: str) -> _Call[dict[str, Any]]:
    return _Call(method, f"/v1/jobs/{quote(job_id, safe='')}", _json)


def _poll_delay(record: dict[str, Any], deadline: float | None, poll: float) -> float | None:
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
class _Retry:
    """When to try a call again, and how long to wait first."""

    retries: int
    base_s: float = 0.1
    cap_s: float = 10.0

    def after(
        self, call: _Call[Any], attempt: int, outcome: httpx.Response | httpx.TransportError
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


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"user-agent": USER_AGENT}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


# --- the clients ---------------------------------------------------------------------------


class GanClient:
    """A blocking client for one gan-serve deployment.

    Example::

        with GanClient("http://127.0.0.1:8000", api_key="...") as gan:
            images, labels = gan.sample(64, seed=1, labels=list(range(10)) * 6 + [0] * 4)
            scores = gan.discriminate(images, labels=labels)   # [(probability_real, logit)]
            job = gan.wait(gan.submit_job("mnist-cdcgan", overrides={"max_steps": 500})["id"])

    ``retries`` is how many times a 503 or a failed connection is retried after the first
    attempt; ``timeout`` (seconds) bounds each attempt.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float | None = 60,
        retries: int = 5,
    ) -> None:
        self.base_url = base_url
        self._retry = _Retry(retries)
        self._http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self._http.request(**call.send_args())
            except httpx.TransportError as e:
                outcome = e
            step = self._retry.after(call, attempt, outcome)
            if isinstance(step, httpx.Response):
                return _finish(call, step)
            time.sleep(step)
            attempt += 1

    def sample(
        self,
        n: int = 1,
        seed: int | None = None,
        labels: Labels = None,
        truncation: float | None = None,
        model: str | None = None,
        version: Version = None,
    ) -> Samples:
        """``n`` images, uint8 [N, H, W, C], and their labels (None for unconditional models).

        Image i uses seed ``seed + i``; without a seed the server draws one.
        """
        call = _sample_call("npy", _samples, n, seed, labels, truncation, model, version)
        return self._run(call)

    def sample_png(
        self,
        n: int = 1,
        seed: int | None = None,
        labels: Labels = None,
        truncation: float | None = None,
        model: str | None = None,
        version: Version = None,
        cols: int | None = None,
    ) -> bytes:
        """The same images as ``sample``, as one PNG (a grid of ``cols`` columns when n > 1)."""
        call = _sample_call(
            "png", lambda r: r.content, n, seed, labels, truncation, model, version, cols
        )
        return self._run(call)

    def discriminate(
        self,
        images: np.ndarray,
        labels: Labels = None,
        model: str | None = None,
        version: Version = None,
    ) -> Scores:
        """``(probability_real, logit)`` per image of a uint8 [N, H, W, C] array."""
        return self._run(_discriminate_call(images, labels, model, version))

    def interpolate(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        from_latent: Sequence[float] | np.ndarray | None = None,
        to_latent: Sequence[float] | np.ndarray | None = None,
        steps: int = 8,
        method: str = "slerp",
        label: int | None = None,
        model: str | None = None,
        version: Version = None,
    ) -> np.ndarray:
        """``steps`` frames, uint8 [steps, H, W, C], from one seed or latent to another."""
        call = _interpolate_call(
            from_seed, to_seed, from_latent, to_latent, steps, method, label, model, version
        )
        return self._run(call)

    def models(self) -> list[dict[str, Any]]:
        """Every model: name, versions, aliases, serving version, architecture, conditional."""
        return self._run(_Call("GET", "/v1/models", _json))

    def model(self, name: str) -> dict[str, Any]:
        """One model's aliases, serving version and every version's manifest."""
        return self._run(_model_call(name))

    def resolve(self, model: str | None = None, version: Version = None) -> dict[str, Any]:
        """The manifest of the version that ``sample(model=..., version=...)`` draws from.

        Asks the server for one image to learn which model and version it picks (the default
        model and the ``production`` alias are the server's to decide), then reads its manifest.
        """
        name, number = self._run(_sample_call("npy", _served, 1, 0, None, None, model, version))
        return _manifest(self.model(name), number)

    def jobs(self, state: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """``{"jobs": [...], "total": n}``, newest first."""
        return self._run(_jobs_call(state, limit, offset))

    def submit_job(
        self,
        model: str,
        preset: str = "cdcgan",
        overrides: dict[str, Any] | None = None,
        base_version: int | None = None,
        dataset: str | None = None,
        promote: str = "if_better",
    ) -> dict[str, Any]:
        """Queue a training job (admin); returns its record, ``state`` "queued"."""
        return self._run(_submit_call(model, preset, overrides, base_version, dataset, promote))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._run(_job_call("GET", job_id))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel (admin): a queued job at once, a running one at its next step."""
        return self._run(_job_call("DELETE", job_id))

    def wait(
        self,
        job_id: str,
        poll: float = 0.5,
        timeout: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job has succeeded, failed or been cancelled; return that record.

        ``progress`` gets every record polled, the last one included. Raises TimeoutError
        after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            if progress is not None:
                progress(record)
            delay = _poll_delay(record, deadline, poll)
            if delay is None:
                return record
            time.sleep(delay)


class AsyncGanClient:
    """``GanClient``'s methods as coroutines, for asyncio programs.

    Example::

        async with AsyncGanClient("http://127.0.0.1:8000") as gan:
            batches = await asyncio.gather(*(gan.sample(64, seed=64 * i) for i in range(8)))
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float | None = 60,
        retries: int = 5,
    ) -> None:
        self.base_url = base_url
        self._retry = _Retry(retries)
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._http.request(**call.send_args())
            except httpx.TransportError as e:
                outcome = e
            step = self._retry.after(call, attempt, outcome)
            if isinstance(step, httpx.Response):
                return _finish(call, step)
            await asyncio.sleep(step)
            attempt += 1

    async def sample(
        self,
        n: int = 1,
        seed: int | None = None,
        labels: Labels = None,
        truncation: float | None = None,
        model: str | None = None,
        version: Version = None,
    ) -> Samples:
        call = _sample_call("npy", _samples, n, seed, labels, truncation, model, version)
        return await self._run(call)

    async def sample_png(
        self,
        n: int = 1,
        seed: int | None = None,
        labels: Labels = None,
        truncation: float | None = None,
        model: str | None = None,
        version: Version = None,
        cols: int | None = None,
    ) -> bytes:
        call = _sample_call(
            "png", lambda r: r.content, n, seed, labels, truncation, model, version, cols
        )
        return await self._run(call)

    async def discriminate(
        self,
        images: np.ndarray,
        labels: Labels = None,
        model: str | None = None,
        version: Version = None,
    ) -> Scores:
        return await self._run(_discriminate_call(images, labels, model, version))

    async def interpolate(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        from_latent: Sequence[float] | np.ndarray | None = None,
        to_latent: Sequence[float] | np.ndarray | None = None,
        steps: int = 8,
        method: str = "slerp",
        label: int | None = None,
        model: str | None = None,
        version: Version = None,
    ) -> np.ndarray:
        call = _interpolate_call(
            from_seed, to_seed, from_latent, to_latent, steps, method, label, model, version
        )
        return await self._run(call)

    async def models(self) -> list[dict[str, Any]]:
        return await self._run(_Call("GET", "/v1/models", _json))

    async def model(self, name: str) -> dict[str, Any]:
        return await self._run(_model_call(name))

    async def resolve(self, model: str | None = None, version: Version = None) -> dict[str, Any]:
        call = _sample_call("npy", _served, 1, 0, None, None, model, version)
        name, number = await self._run(call)
        return _manifest(await self.model(name), number)

    async def jobs(
        self, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        return await self._run(_jobs_call(state, limit, offset))

    async def submit_job(
        self,
        model: str,
        preset: str = "cdcgan",
        overrides: dict[str, Any] | None = None,
        base_version: int | None = None,
        dataset: str | None = None,
        promote: str = "if_better",
    ) -> dict[str, Any]:
        call = _submit_call(model, preset, overrides, base_version, dataset, promote)
        return await self._run(call)

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._run(_job_call("GET", job_id))

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._run(_job_call("DELETE", job_id))

    async def wait(
        self,
        job_id: str,
        poll: float = 0.5,
        timeout: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = await self.job(job_id)
            if progress is not None:
                progress(record)
            delay = _poll_delay(record, deadline, poll)
            if delay is None:
                return record
            await asyncio.sleep(delay)
