"""Typed errors: what gan-serve answered (its problem+json detail), or that it did not.

GanError                  status, title, detail, field, problem (the whole body)
├── InvalidRequestError   400, 413, 415, 422: a bad field, a limit, a media type
├── AuthError             401, 403: an admin route without the right key
├── NotFoundError         404: unknown model, version, alias or job
├── RateLimitedError      429: too many queued jobs
├── OverloadedError       503, still after every retry
└── UnreachableError      no response at all (status None), after every retry
"""

from __future__ import annotations

from typing import Any


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


ERRORS: dict[int, type[GanError]] = {
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
