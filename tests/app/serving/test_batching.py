from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.serving.batching import Batcher
from core.errors import Overloaded
from tests.app.helpers import problem
from tests.conftest import app_settings

# Integer-valued weights and latents keep every product exact, so a row computed inside a
# batch equals the row computed alone whatever summation order BLAS picks for that batch size.
W = np.arange(12, dtype=np.float32).reshape(4, 3) - 5
POISON = -1  # a label that makes the engine raise


class Engine:
    """A real (tiny) numpy model that records what each call saw."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.labels: list[np.ndarray] = []  # the label column of each call, in call order
        self.threads: list[threading.Thread] = []
        self.started = threading.Event()
        self.gate = gate

    def __call__(self, x: dict[str, np.ndarray]) -> np.ndarray:
        self.labels.append(x["label"].copy())
        self.threads.append(threading.current_thread())
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=5)
        if (x["label"] == POISON).any():
            raise ValueError("poisoned batch")
        return forward(x)

    @property
    def sizes(self) -> list[int]:
        return [len(labels) for labels in self.labels]


def forward(x: dict[str, np.ndarray]) -> np.ndarray:
    return x["z"] @ W + x["label"][:, None]


def request(n: int, label: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    z = np.random.default_rng(seed).integers(-8, 8, size=(n, 4)).astype(np.float32)
    return {"z": z, "label": np.arange(label, label + n, dtype=np.int64)}


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout=5))


def make(engine: Engine, **options: Any) -> Batcher:
    settings: dict[str, Any] = {"max_batch": 8, "max_delay_ms": 50, "max_queue": 64}
    return Batcher(engine, **(settings | options), name="test")


async def wait_until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def assert_same(result: np.ndarray, inputs: dict[str, np.ndarray]) -> None:
    expected = forward(inputs)
    assert result.dtype == expected.dtype
    assert np.array_equal(result, expected)


def test_concurrent_requests_are_coalesced_and_each_gets_its_own_rows() -> None:
    engine = Engine()
    observed: list[int] = []

    async def main() -> None:
        batcher = make(engine, on_batch=observed.append)
        await batcher.start()
        inputs = [request(1, label=10 * i, seed=i) for i in range(8)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        for result, x in zip(results, inputs, strict=True):
            assert_same(result, x)

    run(main())
    assert len(engine.sizes) < 8 and sum(engine.sizes) == 8
    assert observed == engine.sizes


def test_mixed_sizes_are_split_back_in_order() -> None:
    engine = Engine()
    sizes = [1, 3, 2, 5, 1]

    async def main() -> None:
        batcher = make(engine, max_batch=16)
        await batcher.start()
        inputs = [request(n, label=100 * i, seed=i) for i, n in enumerate(sizes)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        for result, x in zip(results, inputs, strict=True):
            assert result.shape == (len(x["label"]), 3)
            assert_same(result, x)

    run(main())
    assert sum(engine.sizes) == sum(sizes)
    # Arrival order survives batching: the engine saw the rows in submission order.
    order = np.concatenate(engine.labels)
    assert np.array_equal(
        order, np.concatenate([request(n, 100 * i)["label"] for i, n in enumerate(sizes)])
    )


def test_batches_never_exceed_max_batch() -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine, max_batch=8)
        await batcher.start()
        inputs = [request(3, label=10 * i, seed=i) for i in range(10)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        for result, x in zip(results, inputs, strict=True):
            assert_same(result, x)

    run(main())
    assert max(engine.sizes) <= 8 and sum(engine.sizes) == 30


def test_late_arrivals_join_and_a_full_batch_runs_before_the_deadline() -> None:
    engine = Engine()

    async def main() -> None:
        # A 10 s delay: the test's 5 s timeout fails unless filling the batch ends the wait.
        batcher = make(engine, max_batch=4, max_delay_ms=10_000)
        await batcher.start()
        inputs = [request(1, label=i, seed=i) for i in range(4)]
        tasks = []
        for x in inputs:  # one at a time, each after the worker has gone back to sleep
            tasks.append(asyncio.create_task(batcher.submit(x)))
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*tasks)
        await batcher.close()
        for result, x in zip(results, inputs, strict=True):
            assert_same(result, x)

    run(main())
    assert engine.sizes == [4]


def test_oversized_request_runs_alone_and_whole() -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine, max_batch=8)
        await batcher.start()
        inputs = [request(1, 0), request(12, 100, seed=1), request(1, 200, seed=2)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        for result, x in zip(results, inputs, strict=True):
            assert_same(result, x)

    run(main())
    assert engine.sizes == [1, 12, 1]


def test_disabled_batching_runs_each_request_alone_in_order() -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine, enabled=False)
        await batcher.start()
        inputs = [request(1, label=i, seed=i) for i in range(6)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        for result, x in zip(results, inputs, strict=True):
            assert_same(result, x)

    run(main())
    assert engine.sizes == [1] * 6
    assert np.array_equal(np.concatenate(engine.labels), np.arange(6))


def test_zero_delay_takes_what_is_waiting_without_waiting_for_more() -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine, max_batch=64, max_delay_ms=0)
        await batcher.start()
        # Alone in the queue and far below max_batch: it must not wait for company.
        x = request(2)
        assert_same(await asyncio.wait_for(batcher.submit(x), timeout=1), x)
        # All eight are queued before the worker wakes, so they share one call.
        inputs = [request(1, label=i, seed=i) for i in range(8)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        for result, x in zip(results, inputs, strict=True):
            assert_same(result, x)

    run(main())
    assert engine.sizes == [2, 8]


def test_incompatible_requests_are_not_merged() -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine)
        await batcher.start()
        a = request(1)
        b = request(1) | {"label": np.array([3], dtype=np.int32)}
        ra, rb = await asyncio.gather(batcher.submit(a), batcher.submit(b))
        await batcher.close()
        assert_same(ra, a)
        assert_same(rb, b)

    run(main())
    assert engine.sizes == [1, 1]


def test_full_queue_is_overloaded_and_the_service_recovers() -> None:
    gate = threading.Event()
    engine = Engine(gate)

    async def main() -> None:
        batcher = make(engine, max_delay_ms=0, max_queue=4)
        await batcher.start()
        running = asyncio.create_task(batcher.submit(request(1)))
        await asyncio.to_thread(engine.started.wait, 2)  # the worker is busy with it
        queued = [asyncio.create_task(batcher.submit(request(2, seed=i))) for i in range(2)]
        await wait_until(lambda: batcher.queue_depth == 4)
        with pytest.raises(Overloaded, match="queue is full") as info:
            await batcher.submit(request(1))
        assert info.value.retry_after == 1 and info.value.headers() == {"Retry-After": "1"}
        assert batcher.queue_depth == 4  # the refused request left no trace

        gate.set()
        await asyncio.gather(running, *queued)
        assert batcher.queue_depth == 0
        # Bigger than the whole queue, but nothing waits: accepted, or it could never run.
        x = request(6, seed=9)
        assert_same(await batcher.submit(x), x)
        await batcher.close()

    run(main())


def test_engine_error_fans_out_to_the_batch_and_later_requests_succeed() -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine)
        await batcher.start()
        inputs = [request(1, 0), request(1, POISON), request(2, 5)]
        outcomes = await asyncio.gather(
            *(batcher.submit(x) for x in inputs), return_exceptions=True
        )
        assert all(isinstance(o, ValueError) for o in outcomes)
        assert outcomes[0] is outcomes[1] is outcomes[2]  # one engine call, one exception
        x = request(3, seed=4)
        assert_same(await batcher.submit(x), x)
        await batcher.close()

    run(main())
    assert engine.sizes == [4, 3]


def test_wrong_output_length_is_an_error_not_a_silent_misalignment() -> None:
    async def main() -> None:
        batcher = Batcher(lambda x: x["z"][:1], max_batch=8, max_delay_ms=0, max_queue=8)
        await batcher.start()
        with pytest.raises(RuntimeError, match="batch of 2 rows"):
            await batcher.submit(request(2))
        await batcher.close()

    run(main())


def test_cancelled_waiting_request_is_never_run() -> None:
    gate = threading.Event()
    engine = Engine(gate)

    async def main() -> None:
        batcher = make(engine, max_delay_ms=0)
        await batcher.start()
        running = asyncio.create_task(batcher.submit(request(1, 0)))
        await asyncio.to_thread(engine.started.wait, 2)
        doomed = asyncio.create_task(batcher.submit(request(3, 500)))
        await wait_until(lambda: batcher.queue_depth == 3)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert batcher.queue_depth == 0  # its queue space is free at once

        gate.set()
        await running
        x = request(1, 7)
        assert_same(await batcher.submit(x), x)
        await batcher.close()

    run(main())
    assert 500 not in np.concatenate(engine.labels)
    assert engine.sizes == [1, 1]


def test_caller_cancelled_mid_run_does_not_disturb_the_others() -> None:
    gate = threading.Event()
    engine = Engine(gate)

    async def main() -> None:
        batcher = make(engine, max_delay_ms=0)
        await batcher.start()
        inputs = [request(1, 0), request(2, 10, seed=1)]
        tasks = [asyncio.create_task(batcher.submit(x)) for x in inputs]
        await asyncio.to_thread(engine.started.wait, 2)
        tasks[0].cancel()
        gate.set()
        assert_same(await tasks[1], inputs[1])
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        await batcher.close()

    run(main())
    assert engine.sizes == [3]


def test_close_drains_queued_work_then_refuses_new_work() -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine, max_batch=4)
        await batcher.start()
        inputs = [request(1, label=i, seed=i) for i in range(6)]
        tasks = [asyncio.create_task(batcher.submit(x)) for x in inputs]
        await asyncio.sleep(0)  # let them enqueue
        await batcher.close()
        for task, x in zip(tasks, inputs, strict=True):
            assert task.done()
            assert_same(task.result(), x)
        with pytest.raises(Overloaded, match="shutting down"):
            await batcher.submit(request(1))

    run(main())
    assert sum(engine.sizes) == 6


def test_close_of_an_idle_batcher_returns_promptly() -> None:
    async def main() -> None:
        batcher = make(Engine(), max_delay_ms=10_000)
        await batcher.start()
        await asyncio.wait_for(batcher.close(), timeout=1)
        await asyncio.wait_for(make(Engine()).close(), timeout=1)  # never started

    run(main())


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"z": np.zeros((2, 4)), "label": np.zeros(3)}, "share one leading"),
        ({"z": np.zeros((0, 4)), "label": np.zeros(0)}, "at least 1"),
        ({"z": np.float32(1.0)}, "leading batch axis"),
        ({}, "at least one array"),
    ],
)
def test_inputs_must_share_a_leading_batch_axis(
    inputs: dict[str, np.ndarray], message: str
) -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine)
        await batcher.start()
        with pytest.raises(ValueError, match=message):
            await batcher.submit(inputs)
        await batcher.close()

    run(main())
    assert engine.sizes == []


def test_engine_runs_off_the_event_loop_on_one_named_thread() -> None:
    engine = Engine()
    loop_threads: list[threading.Thread] = []

    async def main() -> None:
        loop_threads.append(threading.current_thread())
        batcher = make(engine, enabled=False)
        await batcher.start()
        await asyncio.gather(*(batcher.submit(request(1, i)) for i in range(3)))
        await batcher.close()

    run(main())
    assert loop_threads[0] not in engine.threads
    assert len(set(engine.threads)) == 1
    assert engine.threads[0].name.startswith("batcher-test")


def test_a_batch_starts_while_the_event_loop_is_busy() -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine, max_delay_ms=0)
        await batcher.start()
        x = request(2)
        task = asyncio.create_task(batcher.submit(x))
        await asyncio.sleep(0)  # the task queues its request
        # The loop is blocked here: the batch can start only if no loop turn is needed for it.
        assert engine.started.wait(timeout=2)
        assert_same(await task, x)
        await batcher.close()

    run(main())


def test_a_caller_past_its_timeout_is_overloaded_and_its_queued_work_dropped() -> None:
    gate = threading.Event()
    engine = Engine(gate)

    async def main() -> None:
        batcher = make(engine, max_delay_ms=0, timeout_s=0.05)
        await batcher.start()
        running = asyncio.create_task(batcher.submit(request(1, 0)))
        await asyncio.to_thread(engine.started.wait, 2)  # the engine is stuck on it
        queued = asyncio.create_task(batcher.submit(request(2, 500)))
        for task in (running, queued):
            with pytest.raises(Overloaded, match="not served within 0.05 s") as info:
                await task
            assert info.value.retry_after == 1
        assert batcher.queue_depth == 0  # the queued one left at its deadline
        gate.set()
        x = request(1, 7)  # the timer re-arms for callers that come later
        assert_same(await batcher.submit(x), x)
        await batcher.close()

    run(main())
    assert 500 not in np.concatenate(engine.labels)  # the expired request never ran
    assert engine.sizes == [1, 1]


def test_a_timer_that_finds_every_caller_answered_does_no_harm() -> None:
    engine = Engine()

    async def main() -> None:
        batcher = make(engine, max_delay_ms=0, timeout_s=0.5)
        await batcher.start()
        for i in range(3):
            x = request(1, i, seed=i)
            assert_same(await batcher.submit(x), x)
        await asyncio.sleep(0.6)  # past every deadline: the timer finds them all answered
        x = request(2, 9)
        assert_same(await batcher.submit(x), x)
        await batcher.close()

    run(main())


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        Batcher(forward, max_batch=0, max_delay_ms=1, max_queue=1)
    with pytest.raises(ValueError, match="max_delay_ms must be 0 or more"):
        Batcher(forward, max_batch=1, max_delay_ms=-1, max_queue=1)


def test_a_request_not_served_in_time_gets_503(models_dir: Path) -> None:
    settings = app_settings(models_dir, request_timeout_s=1e-4)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/sample", json={"model": "tiny-cgan", "n": 512, "format": "npy"})
        body = problem(r, 503)
        assert "not served within" in body["detail"] and r.headers["retry-after"] == "1"
        assert c.get("/healthz").status_code == 200
