"""A Python client for gan-serve, sync and async, with retries and typed errors.

Needs numpy and httpx only (never torch or FastAPI), so any program can draw images::

    with GanClient("http://127.0.0.1:8000") as gan:
        images, labels = gan.sample(16, seed=7, labels=3, model="mnist-cdcgan")
        images.shape, labels[:3]          # (16, 28, 28, 1) uint8, array([3, 3, 3])

Both clients retry a 503 (the server's batch queue is full) and a connection that failed,
with exponential backoff and jitter, waiting what ``Retry-After`` asks (up to 10 s); a 4xx is
the caller's to fix and is raised at once. Every failure is a ``GanError`` carrying the server's
``application/problem+json`` detail (the hierarchy: ``gan_client.errors``).

Each endpoint is described once, as a ``Call`` (the request, and how to parse its answer);
``GanClient`` and ``AsyncGanClient`` differ only in how they send it and how they sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import numpy as np

from gan_client.calls import (
    Call,
    Labels,
    Retry,
    Samples,
    Scores,
    T,
    Version,
    default_headers,
    discriminate_call,
    finish,
    interpolate_call,
    job_call,
    jobs_call,
    manifest_of,
    model_call,
    parse_json,
    parse_samples,
    poll_delay,
    sample_call,
    served,
    submit_call,
)

__all__ = ["AsyncGanClient", "GanClient"]


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
        self._retry = Retry(retries)
        self._http = httpx.Client(
            base_url=base_url, headers=default_headers(api_key), timeout=timeout
        )

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

    def _run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self._http.request(**call.send_args())
            except httpx.TransportError as e:
                outcome = e
            step = self._retry.after(call, attempt, outcome)
            if isinstance(step, httpx.Response):
                return finish(call, step)
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
        latents: Sequence[Sequence[float]] | np.ndarray | None = None,
    ) -> Samples:
        """``n`` images, uint8 [N, H, W, C], and their labels (None for unconditional models).

        Image i uses seed ``seed + i``; without a seed the server draws one. With ``latents``
        (one vector per image, instead of seeds), the images of those vectors.
        """
        call = sample_call(
            "npy", parse_samples, n, seed, labels, truncation, model, version, latents=latents
        )
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
        call = sample_call(
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
        return self._run(discriminate_call(images, labels, model, version))

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
        call = interpolate_call(
            from_seed, to_seed, from_latent, to_latent, steps, method, label, model, version
        )
        return self._run(call)

    def models(self) -> list[dict[str, Any]]:
        """Every model: name, versions, aliases, serving version, architecture, conditional."""
        return self._run(Call("GET", "/v1/models", parse_json))

    def model(self, name: str) -> dict[str, Any]:
        """One model's aliases, serving version and every version's manifest."""
        return self._run(model_call(name))

    def resolve(self, model: str | None = None, version: Version = None) -> dict[str, Any]:
        """The manifest of the version that ``sample(model=..., version=...)`` draws from.

        Asks the server for one image to learn which model and version it picks (the default
        model and the ``production`` alias are the server's to decide), then reads its manifest.
        """
        name, number = self._run(sample_call("npy", served, 1, 0, None, None, model, version))
        return manifest_of(self.model(name), number)

    def jobs(self, state: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """``{"jobs": [...], "total": n}``, newest first."""
        return self._run(jobs_call(state, limit, offset))

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
        return self._run(submit_call(model, preset, overrides, base_version, dataset, promote))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._run(job_call("GET", job_id))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel (admin): a queued job at once, a running one at its next step."""
        return self._run(job_call("DELETE", job_id))

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
            delay = poll_delay(record, deadline, poll)
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
        self._retry = Retry(retries)
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=default_headers(api_key), timeout=timeout
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

    async def _run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._http.request(**call.send_args())
            except httpx.TransportError as e:
                outcome = e
            step = self._retry.after(call, attempt, outcome)
            if isinstance(step, httpx.Response):
                return finish(call, step)
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
        latents: Sequence[Sequence[float]] | np.ndarray | None = None,
    ) -> Samples:
        call = sample_call(
            "npy", parse_samples, n, seed, labels, truncation, model, version, latents=latents
        )
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
        call = sample_call(
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
        return await self._run(discriminate_call(images, labels, model, version))

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
        call = interpolate_call(
            from_seed, to_seed, from_latent, to_latent, steps, method, label, model, version
        )
        return await self._run(call)

    async def models(self) -> list[dict[str, Any]]:
        return await self._run(Call("GET", "/v1/models", parse_json))

    async def model(self, name: str) -> dict[str, Any]:
        return await self._run(model_call(name))

    async def resolve(self, model: str | None = None, version: Version = None) -> dict[str, Any]:
        call = sample_call("npy", served, 1, 0, None, None, model, version)
        name, number = await self._run(call)
        return manifest_of(await self.model(name), number)

    async def jobs(
        self, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        return await self._run(jobs_call(state, limit, offset))

    async def submit_job(
        self,
        model: str,
        preset: str = "cdcgan",
        overrides: dict[str, Any] | None = None,
        base_version: int | None = None,
        dataset: str | None = None,
        promote: str = "if_better",
    ) -> dict[str, Any]:
        call = submit_call(model, preset, overrides, base_version, dataset, promote)
        return await self._run(call)

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._run(job_call("GET", job_id))

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._run(job_call("DELETE", job_id))

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
            delay = poll_delay(record, deadline, poll)
            if delay is None:
                return record
            await asyncio.sleep(delay)
