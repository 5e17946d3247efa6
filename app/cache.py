"""Samples named by what they hold: strong ETags, cache headers, and a bounded memory cache.

A seed names one image forever, so the bytes of a sample drawn from explicit seeds (or
latents) are named by the request and the version that served it: the ETag is a hash of both.
A response for a pinned version (the model and a version number named in the request) never
changes, so caches may keep it for a year; one that resolved an alias may change when the alias
moves, so they keep it ``GAN_ALIAS_MAX_AGE_S`` and then revalidate (``If-None-Match``: 304
while the alias still resolves to the same version). Repeated requests (the playground's grids,
a pipeline's retries) are answered from memory: an LRU bounded by bytes, counted in metrics.
Samples from random seeds are named by nothing and never cached.

    >>> cache = ResponseCache(64 * 2**20, metrics)
    >>> tag = entity_tag("mnist-gan", 4, body_json)
    >>> cache.put(tag, response); cache.get(tag)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from fastapi import Response

from app.metrics import Metrics

IMMUTABLE = "public, max-age=31536000, immutable"


def entity_tag(model: str, version: int, request: bytes) -> str:
    """A strong ETag for what ``request`` (canonical JSON of its fields) drew from a version."""
    digest = hashlib.blake2b(request, digest_size=16, key=f"{model}/{version}".encode())
    return f'"{digest.hexdigest()}"'


def cache_control(pinned: bool, alias_max_age_s: int) -> str:
    return IMMUTABLE if pinned else f"public, max-age={alias_max_age_s}"


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``tag`` (RFC 9110: weak comparison, or *)."""
    if not if_none_match:
        return False
    listed = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in listed or tag in listed


def not_modified(tag: str, control: str, headers: dict[str, str]) -> Response:
    return Response(status_code=304, headers={"ETag": tag, "Cache-Control": control, **headers})


# (body, headers as sent: Content-Length, ETag and all). Tuples of bytes only, which the cyclic
# collector stops tracking: thousands of entries add nothing to its full collections.
_Entry = tuple[bytes, tuple[tuple[bytes, bytes], ...]]


class ResponseCache:
    """Whole responses by ETag, least recently used first out, at most ``max_bytes`` of bodies."""

    def __init__(self, max_bytes: int, metrics: Metrics) -> None:
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def get(self, tag: str) -> Response | None:
        entry = self._entries.get(tag)
        if entry is None:
            self.metrics.cache_misses.inc()
            return None
        self._entries.move_to_end(tag)
        self.metrics.cache_hits.inc()
        body, headers = entry
        response = Response(body)
        response.raw_headers = list(headers)
        return response

    def put(self, tag: str, response: Response) -> None:
        body = bytes(response.body)
        if len(body) > self.max_bytes or tag in self._entries:
            return
        self._entries[tag] = (body, tuple(response.raw_headers))
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, (evicted, _) = self._entries.popitem(last=False)
            self._bytes -= len(evicted)
        self.metrics.cache_bytes.set(self._bytes)
