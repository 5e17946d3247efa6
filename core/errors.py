"""Errors the service raises, and how they become ``application/problem+json``.

Core modules raise these, never ``HTTPException``; one handler renders them
(RFC 9457)::

    ApiError                      500  base; never raised on its own
    ├── BadRequest                400
    │   ├── InvalidImage          422  an upload that is not a usable image
    │   ├── InvalidInput          422  a well-formed request asking for something impossible
    │   ├── LimitExceeded         413  over a configured size limit
    │   └── UnsupportedMediaType  415
    ├── Unauthorized              401  admin route without the right key
    ├── NotFound                  404  unknown model, version, alias or job
    ├── Conflict                  409
    ├── TooManyRequests           429  over a configured count limit
    ├── Overloaded                503  batch queue full; carries Retry-After
    ├── NotReady                  503  model not loaded (yet), job queue unreachable
    └── IntegrityError            500  an artifact whose sha256 does not match
"""

from __future__ import annotations


class ApiError(Exception):
    status: int = 500
    title: str = "internal error"

    def __init__(self, detail: str, *, field: str | None = None, **extensions: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extensions = extensions  # RFC 9457 extension members, rendered beside detail

    @property
    def type(self) -> str:
        return "urn:gan-serve:problem:" + self.title.replace(" ", "-")

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ApiError):
    status = 400
    title = "bad request"


class InvalidImage(BadRequest):
    status = 422
    title = "invalid image"


class InvalidInput(BadRequest):
    status = 422
    title = "invalid input"


class LimitExceeded(BadRequest):
    status = 413
    title = "limit exceeded"


class UnsupportedMediaType(BadRequest):
    status = 415
    title = "unsupported media type"


class Unauthorized(ApiError):
    status = 401
    title = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class NotFound(ApiError):
    status = 404
    title = "not found"


class Conflict(ApiError):
    status = 409
    title = "conflict"


class TooManyRequests(ApiError):
    status = 429
    title = "too many requests"


class Overloaded(ApiError):
    status = 503
    title = "overloaded"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotReady(ApiError):
    status = 503
    title = "not ready"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class Unavailable(ApiError):
    """503 for what this deployment cannot do at all, so no Retry-After."""

    status = 503
    title = "unavailable"


class InsufficientStorage(ApiError):
    """507: what was asked for would not fit on the server's disk."""

    status = 507
    title = "insufficient storage"


class IntegrityError(ApiError):
    status = 500
    title = "integrity error"
