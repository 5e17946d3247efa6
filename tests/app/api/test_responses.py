"""Encoding off the event loop: big batches in a worker thread, small ones where they are."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from app.api.responses import INLINE_PIXEL_BYTES, off_loop


def test_small_pixels_encode_on_the_loop_and_big_ones_in_a_thread() -> None:
    async def where(pixels: np.ndarray | None) -> bool:
        """True when the work ran on the loop's own thread."""
        loop_thread = threading.get_ident()
        ran_on = await off_loop(threading.get_ident, pixels=pixels)
        return ran_on == loop_thread

    small = np.zeros(INLINE_PIXEL_BYTES, np.uint8)
    big = np.zeros(INLINE_PIXEL_BYTES + 1, np.uint8)
    assert asyncio.run(where(small))
    assert not asyncio.run(where(big))
    assert not asyncio.run(where(None))  # nothing said of its size: the thread
