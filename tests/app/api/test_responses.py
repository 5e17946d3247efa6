"""Encoding off the event loop: big batches on the encoding lane, small ones where they are."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from app.api.responses import INLINE_PIXEL_BYTES, off_loop
from app.lanes import Lane


def test_small_pixels_encode_on_the_loop_and_big_ones_on_the_lane() -> None:
    lane = Lane("encoding", 1)

    async def where(pixels: np.ndarray | None) -> str:
        """The name of the thread the work ran on."""
        return await off_loop(lane, lambda: threading.current_thread().name, pixels=pixels)

    small = np.zeros(INLINE_PIXEL_BYTES, np.uint8)
    big = np.zeros(INLINE_PIXEL_BYTES + 1, np.uint8)
    try:
        assert asyncio.run(where(small)) == threading.current_thread().name
        assert asyncio.run(where(big)).startswith("lane-encoding")
        assert asyncio.run(where(None)).startswith("lane-encoding")  # size unknown: the lane
    finally:
        lane.close()
