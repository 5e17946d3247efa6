"""Identifiers that become file names: model names and aliases, job ids, dataset ids.

Each is checked where a request brings it in (path, query string, JSON body or form field),
by the rules here, and the stores that turn one into a path hold to the same rules. Every rule
is an ASCII pattern with a length bound, so an identifier that passes is at most that many
bytes once encoded: ``str.isalnum`` and ``str.isdigit`` admit other scripts' letters and
digits, and a path component past NAME_MAX (255 bytes) makes ``stat`` fail with ENAMETOOLONG,
a 500, where "no such job" was meant.

    >>> job_id("4be1c0ffee4be1c0")
    '4be1c0ffee4be1c0'
    >>> is_name("mnist-gan"), is_name("ｍnist"), is_id("9" * 33)
    (True, False, False)
"""

from __future__ import annotations

import re

from core.errors import NotFound

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"  # model names and aliases: 64 bytes at most
ID_PATTERN = r"^[0-9a-f]{1,32}$"  # job and dataset ids: uuid4 hex digits, 32 bytes at most
# re.fullmatch, never re.match: "$" also matches before a final newline.
NAME_RE = re.compile(NAME_PATTERN)
ID_RE = re.compile(ID_PATTERN)


def is_name(value: str) -> bool:
    return NAME_RE.fullmatch(value) is not None


def is_id(value: str) -> bool:
    return ID_RE.fullmatch(value) is not None


def job_id(value: str) -> str:
    """``value`` when it can name a job; NotFound otherwise, as no job has such an id."""
    if not is_id(value):
        raise NotFound(f"no job {shown(value)}", field="job_id")
    return value


def dataset_id(value: str) -> str:
    """``value`` when it can name an uploaded dataset; NotFound otherwise."""
    if not is_id(value):
        raise NotFound(f"no dataset {shown(value)}", field="dataset")
    return value


def shown(value: str, limit: int = 40) -> str:
    """A client's value quoted for a message, cut short: a refusal need not echo 10 kB."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."
