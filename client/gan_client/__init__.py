"""The gan-serve client: ``GanClient`` and ``AsyncGanClient`` (httpx and numpy only), the
``gan-serve`` command (``gan_client.cli``) and ``GanDataset`` (``gan_client.dataset``, the one
module that needs torch).

    >>> from gan_client import GanClient
    >>> with GanClient("http://127.0.0.1:8000") as gan:
    ...     images, labels = gan.sample(16, seed=7, labels=3, model="mnist-cdcgan")
"""

from gan_client.async_client import AsyncGanClient
from gan_client.client import GanClient
from gan_client.errors import (
    AuthError,
    GanError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    RateLimitedError,
    UnreachableError,
)

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
