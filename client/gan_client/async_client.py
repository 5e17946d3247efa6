"""``AsyncGanClient``: ``GanClient``'s methods as coroutines, for asyncio programs.

The blocking client's requests (``gan_client.calls``) and event streams (``gan_client.events``),
sent with ``httpx.AsyncClient`` and awaited sleeps; the methods' contracts are ``GanClient``'s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import numpy as np

from gan_client.calls import (
    Call,
    Images,
    Labels,
    Retry,
    Samples,
    Scores,
    T,
    Version,
    alias_call,
    default_headers,
    discriminate_call,
    export_call,
    export_delete_call,
    export_manifest_call,
    finish,
    interpolate_call,
    job_call,
    job_log_call,
    jobs_call,
    manifest_of,
    model_call,
    parse_bytes,
    parse_json,
    parse_npy,
    parse_samples,
    poll_delay,
    sample_call,
    served,
    submit_call,
    upload_call,
)
from gan_client.errors import GanError
from gan_client.events import NO_STREAM, EventStream, Follower, JobEvent

__all__ = ["AsyncGanClient"]


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
        call = sample_call("png", parse_bytes, n, seed, labels, truncation, model, version, cols)
        return await self._run(call)

    async def discriminate(
        self,
        images: Images,
        labels: Labels = None,
        model: str | None = None,
        version: Version = None,
        resize: bool = False,
    ) -> Scores:
        return await self._run(discriminate_call(images, labels, model, version, resize))

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
            "npy",
            parse_npy,
            from_seed,
            to_seed,
            from_latent,
            to_latent,
            steps,
            method,
            label,
            model,
            version,
        )
        return await self._run(call)

    async def interpolate_png(
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
    ) -> bytes:
        call = interpolate_call(
            "png",
            parse_bytes,
            from_seed,
            to_seed,
            from_latent,
            to_latent,
            steps,
            method,
            label,
            model,
            version,
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

    async def set_alias(self, model: str, alias: str, version: int) -> dict[str, Any]:
        return await self._run(alias_call(model, alias, version))

    async def upload_dataset(
        self, path: str | os.PathLike[str], name: str | None = None
    ) -> dict[str, Any]:
        # Reading (and zipping a folder) off the event loop.
        call = await asyncio.to_thread(upload_call, Path(path), name)
        return await self._run(call)

    async def datasets(self) -> list[dict[str, Any]]:
        return await self._run(Call("GET", "/v1/datasets", parse_json))

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
        promote_on: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        call = submit_call(model, preset, overrides, base_version, dataset, promote, promote_on)
        return await self._run(call)

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._run(job_call("GET", job_id))

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._run(job_call("DELETE", job_id))

    async def job_log(self, job_id: str) -> str:
        return await self._run(job_log_call(job_id))

    async def resume_job(self, job_id: str) -> dict[str, Any]:
        return await self._run(job_call("POST", job_id, "resume"))

    async def start_export(
        self,
        model: str,
        n: int,
        *,
        version: Version = None,
        seed: int = 0,
        label: int | None = None,
        label_mix: Sequence[float] | None = None,
        truncation: float | None = None,
        format: str = "npz",
        shard_size: int | None = None,
    ) -> dict[str, Any]:
        call = export_call(
            model, n, version, seed, label, label_mix, truncation, format, shard_size
        )
        return await self._run(call)

    async def export_manifest(self, job_id: str) -> dict[str, Any]:
        return await self._run(export_manifest_call(job_id))

    async def delete_export(self, job_id: str) -> None:
        await self._run(export_delete_call(job_id))

    async def events(self, job_id: str, timeout: float | None = None) -> AsyncIterator[JobEvent]:
        stream = EventStream(job_id, self._retry, timeout)
        while True:
            try:
                timeouts = stream.timeout(self._http.timeout)
                async with self._http.stream(
                    **stream.call.send_args(), timeout=timeouts
                ) as response:
                    if response.is_error:
                        await response.aread()
                        delay = stream.refused(response)
                    else:
                        stream.connected()
                        async for line in response.aiter_lines():
                            if (event := stream.feed(line)) is not None:
                                yield event
                            if stream.done:
                                return
                        delay = stream.closed_early(response)
            except httpx.TransportError as e:
                delay = stream.ended(e)
            await asyncio.sleep(delay)

    async def wait(
        self,
        job_id: str,
        poll: float = 0.5,
        timeout: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        follower = Follower(progress)
        try:
            async for event in self.events(job_id, timeout):
                follower.see(event)
            return follower.final()
        except GanError as e:
            if e.status not in NO_STREAM:
                raise
        while True:
            record = await self.job(job_id)
            if progress is not None:
                progress(record)
            delay = poll_delay(record, deadline, poll)
            if delay is None:
                return record
            await asyncio.sleep(delay)
