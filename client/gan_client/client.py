"""A Python client for gan-serve, with retries and typed errors: ``GanClient`` here, and
``AsyncGanClient`` (``async_client.py``), the same for asyncio programs.

Needs numpy and httpx only (never torch or FastAPI), so any program can draw images::

    with GanClient("http://127.0.0.1:8000") as gan:
        images, labels = gan.sample(16, seed=7, labels=3, model="mnist-cdcgan")
        images.shape, labels[:3]          # (16, 28, 28, 1) uint8, array([3, 3, 3])

Both clients retry a 503 (the server's batch queue is full) and a connection that failed,
with exponential backoff and jitter, waiting what ``Retry-After`` asks (up to 10 s); a 4xx is
the caller's to fix and is raised at once. Every failure is a ``GanError`` carrying the server's
``application/problem+json`` detail (the hierarchy: ``gan_client.errors``).

Each endpoint is described once, as a ``Call`` (the request, and how to parse its answer);
``GanClient`` and ``AsyncGanClient`` differ only in how they send it and how they sleep. So
with a job's server-sent events: an ``EventStream`` (``gan_client.events``) parses them and
decides when to reconnect; the clients open the connections and feed it lines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
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
from gan_client.exports import download

__all__ = ["GanClient"]


class GanClient:
    """A blocking client for one gan-serve deployment.

    Example::

        with GanClient("http://127.0.0.1:8000", api_key="...") as gan:
            images, labels = gan.sample(64, seed=1, labels=list(range(10)) * 6 + [0] * 4)
            scores = gan.discriminate(images, labels=labels)   # [(probability_real, logit)]
            job = gan.submit_job("mnist-cdcgan", overrides={"max_steps": 500})
            for kind, data in gan.events(job["id"]):    # ("progress", {"step": 10, ...}), ...
                ...

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
        call = sample_call("png", parse_bytes, n, seed, labels, truncation, model, version, cols)
        return self._run(call)

    def discriminate(
        self,
        images: Images,
        labels: Labels = None,
        model: str | None = None,
        version: Version = None,
        resize: bool = False,
    ) -> Scores:
        """``(probability_real, logit)`` per image: of a uint8 [N, H, W, C] array, or of image
        files' bytes (PNG, JPEG, WebP; the server decodes them, and ``resize`` scales them to
        the model's size)."""
        return self._run(discriminate_call(images, labels, model, version, resize))

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
        return self._run(call)

    def interpolate_png(
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
        """The same frames as ``interpolate``, as one PNG strip."""
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

    def set_alias(self, model: str, alias: str, version: int) -> dict[str, Any]:
        """Point ``alias`` at a version (admin). ``production`` is what a request naming no
        version gets, so setting it promotes or rolls back."""
        return self._run(alias_call(model, alias, version))

    def upload_dataset(
        self, path: str | os.PathLike[str], name: str | None = None
    ) -> dict[str, Any]:
        """Store training data (admin): a .zip of ``<class>/<image>`` files, an .npz with
        ``images`` and ``labels``, or a folder of class folders (zipped here).

        Returns its record (id, name, size, class names, image shape); the id goes in
        ``submit_job(dataset=...)``. ``name`` defaults to the file's.
        """
        return self._run(upload_call(Path(path), name))

    def datasets(self) -> list[dict[str, Any]]:
        """Every uploaded dataset's record, newest first."""
        return self._run(Call("GET", "/v1/datasets", parse_json))

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
        promote_on: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Queue a training job (admin); returns its record, ``state`` "queued".

        ``promote_on`` names the scores ``if_better`` compares (default: the server's).
        """
        call = submit_call(model, preset, overrides, base_version, dataset, promote, promote_on)
        return self._run(call)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._run(job_call("GET", job_id))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel (admin): a queued job at once, a running one at its next step."""
        return self._run(job_call("DELETE", job_id))

    def job_log(self, job_id: str) -> str:
        """The training process's output (its last megabyte)."""
        return self._run(job_log_call(job_id))

    def resume_job(self, job_id: str) -> dict[str, Any]:
        """Queue a cancelled or failed job again (admin): a training goes on from its
        checkpoint, an export from its last finished shard."""
        return self._run(job_call("POST", job_id, "resume"))

    def start_export(
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
        """Queue an export of ``n`` images (admin): image i uses seed ``seed + i``; labels are
        ``seed mod classes`` unless ``label`` or ``label_mix`` (a weight per class) is given.
        Returns its job record; ``record["export"]["version"]`` is the version pinned."""
        call = export_call(
            model, n, version, seed, label, label_mix, truncation, format, shard_size
        )
        return self._run(call)

    def export_manifest(self, job_id: str) -> dict[str, Any]:
        """Seeds, labels and the sha256 of every shard finished so far (``complete`` at the
        end)."""
        return self._run(export_manifest_call(job_id))

    def delete_export(self, job_id: str) -> None:
        """Remove an export that has ended, with its shards (admin)."""
        self._run(export_delete_call(job_id))

    def download_export(
        self,
        job_id: str,
        folder: str | Path,
        *,
        wait: bool = True,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Download an export's shards into ``folder`` as they are made (until it is complete,
        with ``wait``), checking each one's sha256; run again after any failure, it goes on
        where it stopped. Returns the manifest; ``GanDataset.from_export(folder)`` reads it."""
        return download(self._http, job_id, Path(folder), wait=wait, progress=progress)

    def events(self, job_id: str, timeout: float | None = None) -> Iterator[JobEvent]:
        """The job's events as ``(type, data)`` pairs as they happen, ending with the ``state``
        event of its terminal record.

        First the run's events so far, then each as it comes (the lines of its
        ``stats.jsonl``: for a training ``start``, ``progress``, ``evaluation``, then
        ``completed`` or ``stopped``), and ``state`` with the job record at each change of
        state. A dropped connection is reopened, retried as any call is, without repeating an
        event. Raises TimeoutError after ``timeout`` seconds.
        """
        stream = EventStream(job_id, self._retry, timeout)
        while True:
            try:
                timeouts = stream.timeout(self._http.timeout)
                with self._http.stream(**stream.call.send_args(), timeout=timeouts) as response:
                    if response.is_error:
                        response.read()
                        delay = stream.refused(response)
                    else:
                        stream.connected()
                        for line in response.iter_lines():
                            if (event := stream.feed(line)) is not None:
                                yield event
                            if stream.done:
                                return
                        delay = stream.closed_early(response)
            except httpx.TransportError as e:
                delay = stream.ended(e)
            time.sleep(delay)

    def wait(
        self,
        job_id: str,
        poll: float = 0.5,
        timeout: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Follow the job until it has succeeded, failed or been cancelled; return that record.

        Follows ``events()``: ``progress`` gets the job record at every event (training events
        update its ``progress``), the final record included. A server without the event stream
        is polled every ``poll`` seconds instead. Raises TimeoutError after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        follower = Follower(progress)
        try:
            for event in self.events(job_id, timeout):
                follower.see(event)
            return follower.final()
        except GanError as e:
            if e.status not in NO_STREAM:
                raise
        while True:
            record = self.job(job_id)
            if progress is not None:
                progress(record)
            delay = poll_delay(record, deadline, poll)
            if delay is None:
                return record
            time.sleep(delay)
