"""Lanes: a bounded pool of threads for each kind of blocking work a request brings.

Uploads (decoding and resizing images, unpacking datasets) and response encoding (PNG, GIF,
zip) each get their own threads, so a burst of one cannot queue the other, nor the small file
reads of the repository and the job store that stay on the event loop's default executor:
six large uploads at once used to hold every thread of that one shared pool while
``/v1/models`` and small samples waited behind them (README, Reliability).

    >>> lanes = Lanes.from_settings(settings)
    >>> pixels = await lanes.uploads.run(decode, blob)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from app.serving.engine import available_cpus
from app.settings import Settings

T = TypeVar("T")


class Lane:
    def __init__(self, name: str, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"lane-{name}")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Lanes:
    uploads: Lane
    encoding: Lane

    @classmethod
    def from_settings(cls, settings: Settings) -> Lanes:
        cpus = available_cpus()
        return cls(
            uploads=Lane("uploads", settings.upload_threads or cpus),
            encoding=Lane("encoding", settings.encode_threads or cpus),
        )

    def close(self) -> None:
        self.uploads.close()
        self.encoding.close()
