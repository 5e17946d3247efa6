"""Dynamic batching: concurrent requests for one engine coalesced into one engine call.

One ``Batcher`` sits in front of each engine. Callers ``await submit(inputs)`` with a batch of
``n`` rows; one worker thread takes waiting requests in arrival order, concatenates them along
axis 0, runs the engine once, and hands each caller back exactly its rows of the output. The
queue is bounded in rows, so a burst of traffic is answered with ``Overloaded`` (503,
Retry-After) rather than with unbounded memory.

The worker is a thread, not a task on the event loop, so that it takes the next batch the
moment the engine is free. A task would wait for its turn behind every handler the loop has
ready, and under load those are all the requests of the next batch: the engine would idle
while the loop parsed them, then the loop while the engine ran them (README, Benchmarks).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.errors import Overloaded

__all__ = ["Batcher", "RunFn"]

logger = logging.getLogger(__name__)

RunFn = Callable[[dict[str, np.ndarray]], np.ndarray]
"""An engine call: named inputs, each with leading batch axis N -> output with leading axis N."""

# What must agree for two requests to share one engine call: input names, and per input the
# shape after the batch axis and the dtype. Concatenating anything else would fail, or would
# silently upcast (int32 labels merged with int64 ones) and change what the engine sees.
_Signature = tuple[tuple[str, tuple[int, ...], str], ...]


@dataclass(eq=False)  # identity equality: deque.remove must find this request, not compare arrays
class _Request:
    inputs: dict[str, np.ndarray]
    rows: int
    signature: _Signature
    future: asyncio.Future[np.ndarray]
    deadline: float = 0.0  # loop time after which the caller gets Overloaded (with a timeout)
    taken: bool = False  # left the queue (into a batch, or dropped); guarded by the lock


class Batcher:
    """Coalesces concurrent ``submit`` calls into few calls of one engine function.

    The worker takes the first waiting request, then the requests that arrive (in order, while
    they fit in ``max_batch`` rows) for up to ``max_delay_ms`` after it took the first, or until
    they fill the batch; ``max_delay_ms=0`` takes only what is already waiting, which under load
    is what arrived while the engine ran the previous batch. A request that cannot share the
    batch (another input signature) starts the next one. A request of more than ``max_batch``
    rows runs alone, never split. With ``enabled=False`` every request runs alone, through the
    same queue and worker, so ordering and backpressure do not change.

    The queue holds at most ``max_queue`` rows not yet taken by the worker; a submit that would
    go over raises ``Overloaded``. A request larger than ``max_queue`` is still accepted when
    nothing is waiting, otherwise it could never run.

    If the engine raises, every caller of that batch gets that exception and the worker goes on.
    A caller cancelled while queued is dropped before its batch runs; one cancelled while its
    batch runs just never sees its rows. With ``timeout_s``, a caller not answered within that
    many seconds gets ``Overloaded``, and is dropped like a cancelled one.

    Example::

        batcher = Batcher(engine.run, max_batch=64, max_delay_ms=5, max_queue=1024, name="mnist")
        await batcher.start()
        images = await batcher.submit({"z": z, "label": labels})  # z [n, 100], labels [n]
        await batcher.close()  # refuses new work, finishes what is queued
    """

    def __init__(
        self,
        run: RunFn,
        *,
        max_batch: int,
        max_delay_ms: float,
        max_queue: int,
        enabled: bool = True,
        timeout_s: float | None = None,
        name: str = "",
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_delay_ms < 0:
            raise ValueError(f"max_delay_ms must be 0 or more, got {max_delay_ms}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self._run = run
        self._max_batch = max_batch
        self._max_delay = max_delay_ms / 1000.0
        self._max_queue = max_queue
        self._enabled = enabled
        self._timeout = timeout_s
        self._on_batch = on_batch
        self._name = name
        self._label = f"batcher {name}" if name else "batcher"
        # Guards the queue, its row counts and the closing flag, which the worker shares.
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()
        self._waiting_rows = 0
        self._wake_at_rows = 1  # rows waiting at which submit wakes the worker
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None  # set when the worker has returned
        # Callers in submission order, so in deadline order: one timer, for the oldest, serves
        # them all, where a timer per request would cost the event loop a heap entry each.
        self._deadlines: deque[_Request] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def queue_depth(self) -> int:
        """Rows waiting in the queue, not yet taken by the worker."""
        return self._waiting_rows

    async def start(self) -> None:
        """Start the worker, delivering results to the running event loop."""
        if self._loop is not None or self._closing:
            raise RuntimeError(f"{self._label} starts once, and not after close()")
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        # One thread: the engine must see one call at a time (ONNX Runtime parallelises inside).
        name = f"batcher-{self._name}" if self._name else "batcher"
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    async def close(self) -> None:
        """Refuse new requests, let queued ones finish, then stop the worker."""
        if self._timer is not None:
            self._timer.cancel()  # what is queued is finished, however long it takes
            self._timer = None
        with self._cond:
            self._closing = True
            self._cond.notify()  # an idle worker wakes, sees the closed empty queue, and returns
        if self._stopped is not None:
            # shield: a cancelled close must not cancel the future the worker will set.
            await asyncio.shield(self._stopped)

    async def submit(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Run ``inputs`` (arrays sharing a leading batch axis n) and return its n output rows."""
        rows, signature = _check_inputs(inputs)
        if self._closing:
            raise Overloaded(f"{self._label} is shutting down; retry", retry_after=1)
        if self._loop is None:
            raise RuntimeError(f"{self._label} is not started; await start() first")
        request = _Request(inputs, rows, signature, self._loop.create_future())
        with self._cond:
            if self._waiting_rows and self._waiting_rows + rows > self._max_queue:
                raise Overloaded(
                    f"{self._label} queue is full ({self._waiting_rows} of {self._max_queue} "
                    f"rows waiting, this request adds {rows}); retry later",
                    retry_after=1,
                )
            self._queue.append(request)
            self._waiting_rows += rows
            if self._waiting_rows >= self._wake_at_rows:
                self._cond.notify()
        if self._timeout is not None:
            request.deadline = self._loop.time() + self._timeout
            self._deadlines.append(request)
            if self._timer is None:
                self._timer = self._loop.call_at(request.deadline, self._expire)
        try:
            return await request.future
        except asyncio.CancelledError:
            # The client went away: free its queue space now and spend no compute on it.
            self._unqueue(request)
            raise

    def _unqueue(self, request: _Request) -> None:
        with self._cond:
            if not request.taken:
                self._queue.remove(request)
                self._waiting_rows -= request.rows
                request.taken = True

    def _expire(self) -> None:
        """Answer the callers past their deadline with Overloaded; re-arm for the next one."""
        assert self._loop is not None and self._timeout is not None
        self._timer = None
        now = self._loop.time()
        while self._deadlines:
            request = self._deadlines[0]
            if not request.future.done():
                if request.deadline > now:
                    self._timer = self._loop.call_at(request.deadline, self._expire)
                    return
                self._unqueue(request)
                message = f"not served within {self._timeout:g} s; retry later"
                request.future.set_exception(Overloaded(message, retry_after=1))
            self._deadlines.popleft()

    # The worker thread.

    def _serve(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._run_batch(batch)
        finally:
            self._call_on_loop(self._finish)

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a request and gather the batch it heads; None once closed and drained."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            first = self._pop()
            batch, rows = [first], first.rows
            if not self._enabled:
                return batch
            deadline = time.monotonic() + self._max_delay
            while True:
                while self._queue:
                    head = self._queue[0]
                    # Strict arrival order: a head that does not fit starts the next batch.
                    if rows + head.rows > self._max_batch or head.signature != first.signature:
                        return batch
                    batch.append(self._pop())
                    rows += head.rows
                left = deadline - time.monotonic()
                if rows >= self._max_batch or left <= 0 or self._closing:
                    return batch
                # Sleep until the deadline or until enough rows wait to fill the batch: one
                # wake-up per batch rather than one per arriving request.
                self._wake_at_rows = self._max_batch - rows
                try:
                    self._cond.wait(left)
                finally:
                    self._wake_at_rows = 1

    def _run_batch(self, batch: list[_Request]) -> None:
        # Callers that gave up while the batch was gathering are dropped before it runs (done()
        # only reads the future's state, which is safe from this thread; setting it is not).
        batch = [request for request in batch if not request.future.done()]
        if not batch:
            return
        rows = sum(request.rows for request in batch)
        outcome: np.ndarray | Exception
        try:
            outcome = _run_merged(self._run, [request.inputs for request in batch], rows)
        except Exception as exc:
            outcome = exc  # every caller of the batch gets it; the worker goes on
        self._call_on_loop(self._deliver, batch, outcome, rows)

    def _pop(self) -> _Request:
        request = self._queue.popleft()
        request.taken = True
        self._waiting_rows -= request.rows
        return request

    def _call_on_loop(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: nobody is left waiting for this

    # Back on the event loop.

    def _deliver(self, batch: list[_Request], outcome: np.ndarray | Exception, rows: int) -> None:
        offset = 0
        for request in batch:
            if not request.future.done():  # a cancelled caller's rows are simply dropped
                if isinstance(outcome, Exception):
                    request.future.set_exception(outcome)
                else:
                    request.future.set_result(outcome[offset : offset + request.rows])
            offset += request.rows
        while self._deadlines and self._deadlines[0].future.done():  # they need no timer
            self._deadlines.popleft()
        if self._on_batch is not None:
            try:
                self._on_batch(rows)
            except Exception:
                # A broken metrics hook must not stop the others being answered.
                logger.exception("%s: on_batch callback failed", self._label)

    def _finish(self) -> None:
        # Reached with work queued only if the worker died: fail those callers rather than
        # leave them waiting forever.
        with self._cond:
            self._closing = True
            leftover = list(self._queue)
            self._queue.clear()
            self._waiting_rows = 0
        for request in leftover:
            if not request.future.done():
                request.future.set_exception(Overloaded(f"{self._label} stopped; retry"))
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)


def _check_inputs(inputs: dict[str, np.ndarray]) -> tuple[int, _Signature]:
    # One pass over the arrays: it runs on the event loop for every request.
    if not inputs:
        raise ValueError("inputs must name at least one array")
    signature = []
    for name, array in sorted(inputs.items()):
        if not isinstance(array, np.ndarray) or array.ndim == 0:
            raise ValueError(f"input {name!r} must be a numpy array with a leading batch axis")
        signature.append((name, array.shape[1:], array.dtype.str))
    rows = next(iter(inputs.values())).shape[0]
    if any(array.shape[0] != rows for array in inputs.values()):
        sizes = {name: array.shape[0] for name, array in inputs.items()}
        raise ValueError(f"all inputs must share one leading (batch) dimension, got {sizes}")
    if rows < 1:
        raise ValueError("the leading (batch) dimension must be at least 1, got 0")
    return rows, tuple(signature)


def _run_merged(run: RunFn, parts: list[dict[str, np.ndarray]], rows: int) -> np.ndarray:
    # Runs in the executor thread, so concatenating large inputs never blocks the event loop.
    if len(parts) == 1:
        inputs = parts[0]
    else:
        inputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    output = run(inputs)
    if not isinstance(output, np.ndarray) or output.ndim == 0 or output.shape[0] != rows:
        shape = getattr(output, "shape", type(output).__name__)
        raise RuntimeError(f"engine returned {shape} for a batch of {rows} rows")
    return output
