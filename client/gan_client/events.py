"""A job's server-sent events (``GET /v1/jobs/{id}/events``), across dropped connections.

The server sends each line of the run's ``stats.jsonl`` as ``event: <type>`` with the line as
``data``, and ``event: state`` with the whole job record whenever the state changes; the stream
ends after a terminal state. Every connection starts again from the run's first event, so after
a reconnect :class:`EventStream` skips as many training events as it has already passed on
(``stats.jsonl`` only grows) and a state event repeating the state last passed on.

``GanClient.events`` and ``AsyncGanClient.events`` drive an ``EventStream``: they open the
connection, feed it lines and sleep as it says; it decides everything else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from gan_client.calls import TERMINAL_STATES, Call, Retry, job_path, parse_json, problem

JobEvent = tuple[str, Any]  # (event type, the parsed JSON data)
STATE = "state"  # the event carrying the job record
# Answers meaning "no event stream here" (a server older than it): wait() polls instead.
NO_STREAM = frozenset({404, 405})


class EventStream:
    """What one ``events()`` call has passed on, and when to reconnect.

    ``timeout`` (seconds) bounds the whole stream: past it, a non-terminal event or a silent
    connection raises TimeoutError.

    >>> stream = EventStream("4be1c0ffee", Retry(5), timeout=None)
    >>> stream.connected()
    >>> [stream.feed(line) for line in ["event: start", 'data: {"step": 0}', ""]]
    [None, None, ('start', {'step': 0})]
    >>> stream.connected()  # the server replays from the start: passed on already
    >>> [stream.feed(line) for line in ["event: start", 'data: {"step": 0}', ""]]
    [None, None, None]
    """

    def __init__(self, job_id: str, retry: Retry, timeout: float | None) -> None:
        headers = {"accept": "text/event-stream"}
        self.call = Call("GET", f"{job_path(job_id)}/events", parse_json, headers=headers)
        self.job_id = job_id
        self.done = False
        self._retry = retry
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._failures = 0  # connections in a row that failed or ended early
        self._open = False
        self._passed = 0  # training events passed on, over all connections
        self._replayed = 0  # training events on this connection
        self._state: str | None = None
        self._kind = ""
        self._data: list[str] = []

    def timeout(self, default: httpx.Timeout) -> httpx.Timeout:
        """The client's timeouts, with a read cut short at the deadline."""
        left = self._left()
        if left is None:
            return default
        read = left if default.read is None else min(default.read, left)
        return httpx.Timeout(
            connect=default.connect, read=read, write=default.write, pool=default.pool
        )

    def refused(self, response: httpx.Response) -> float:
        """Seconds to wait before asking again after a 503; any other error answer is raised."""
        step = self._retry.after(self.call, self._failures, response)
        if isinstance(step, httpx.Response):
            raise problem(step)
        self._failures += 1
        return step

    def connected(self) -> None:
        self._failures, self._open, self._replayed = 0, True, 0
        self._kind, self._data = "", []

    def feed(self, line: str) -> JobEvent | None:
        """The event a blank line completes, unless it was passed on before."""
        if line and not line.startswith(":"):  # ":" starts a comment (a keep-alive)
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                self._kind = value
            elif field == "data":
                self._data.append(value)
            return None
        if not self._data:
            return None
        kind, data = self._kind or "message", json.loads("\n".join(self._data))
        self._kind, self._data = "", []
        return self._fresh(kind, data)

    def _fresh(self, kind: str, data: Any) -> JobEvent | None:
        if kind == STATE:
            if data["state"] == self._state:
                return None
            self._state = data["state"]
            self.done = self._state in TERMINAL_STATES
        else:
            self._replayed += 1
            if self._replayed <= self._passed:
                return None
            self._passed += 1
        if not self.done:
            self._check_deadline()
        return kind, data

    def ended(self, error: httpx.TransportError) -> float:
        """Seconds to wait before reconnecting after the connection broke.

        A read timed out on an open stream means only that the job was quiet: reconnect at once.
        Otherwise, as for any call: raises UnreachableError after the retries.
        """
        was_open, self._open = self._open, False
        self._check_deadline()
        if was_open and isinstance(error, httpx.ReadTimeout):
            return 0.0
        step = self._retry.after(self.call, self._failures, error)
        assert not isinstance(step, httpx.Response)  # a transport error never is one
        self._failures += 1
        return step

    def closed_early(self, response: httpx.Response) -> float:
        """Seconds to wait before reconnecting after the server ended the stream before the job
        ended (a server shutting down does)."""
        cut = httpx.RemoteProtocolError("the stream ended before the job", request=response.request)
        return self.ended(cut)

    def _left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _check_deadline(self) -> None:
        left = self._left()
        if left is not None and left <= 0:
            raise TimeoutError(f"job {self.job_id} is still {self._state or 'not started'}")


class Follower:
    """Job records from a job's events, each passed to ``progress`` as it arrives.

    A state event carries the record; a training event updates the last record's progress
    with the fields they share, as the server does its own (before the first state event,
    which follows the replay, there is no record yet).

    >>> follower = Follower(progress=None)
    >>> follower.see(("state", {"state": "running", "progress": {"step": 0}}))
    >>> follower.see(("progress", {"event": "progress", "step": 2}))
    >>> follower.record
    {'state': 'running', 'progress': {'step': 2}}
    """

    def __init__(self, progress: Callable[[dict[str, Any]], None] | None) -> None:
        self.record: dict[str, Any] | None = None
        self._progress = progress

    def see(self, event: JobEvent) -> None:
        kind, data = event
        if kind == STATE:
            self.record = data
        elif self.record is not None:
            progress = self.record["progress"]
            update = {k: v for k, v in data.items() if k in progress}
            self.record = {**self.record, "progress": {**progress, **update}}
        if self.record is not None and self._progress is not None:
            self._progress(self.record)

    def final(self) -> dict[str, Any]:
        assert self.record is not None  # events() ends with the terminal state event
        return self.record
