"""gan_client.errors: which error each status becomes, and errors that survive pickling."""

from __future__ import annotations

import pickle

import pytest
from gan_client.errors import (
    ERRORS,
    AuthError,
    GanError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    RateLimitedError,
    UnreachableError,
)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequestError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (413, InvalidRequestError),
        (415, InvalidRequestError),
        (422, InvalidRequestError),
        (429, RateLimitedError),
        (503, OverloadedError),
    ],
)
def test_each_status_maps_to_its_error(status: int, error: type[GanError]) -> None:
    assert ERRORS[status] is error
    assert issubclass(error, GanError)


def test_statuses_the_server_does_not_answer_with_are_not_mapped() -> None:
    assert 200 not in ERRORS and 500 not in ERRORS


def test_the_message_names_status_title_detail_and_field() -> None:
    e = InvalidRequestError(413, "Payload Too Large", "n=5000 is over the limit of 1024", "n")
    assert str(e) == "413 Payload Too Large: n=5000 is over the limit of 1024 (field n)"
    gone = UnreachableError(None, "Unreachable", "connection refused")
    assert str(gone) == "Unreachable: connection refused" and gone.problem == {}


@pytest.mark.parametrize("error", [GanError, NotFoundError, OverloadedError, UnreachableError])
def test_an_error_survives_pickling_with_its_fields(error: type[GanError]) -> None:
    problem = {"status": 404, "title": "Not Found", "detail": "no model 'x'", "field": "model"}
    e = error(404, "Not Found", "no model 'x'", "model", problem)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is error
    assert (back.status, back.title, back.detail, back.field, back.problem) == (
        404, "Not Found", "no model 'x'", "model", problem,
    )  # fmt: skip
    assert str(back) == str(e)
