"""Prometheus metrics, one registry per app so that several apps (tests, replicas) never clash."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.jobs.store import JobStore

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = tuple(float(2**i) for i in range(13))  # 1 .. 4096


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "gan_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "gan_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images_generated = Counter(
            "gan_images_generated", "images generated", ["model", "version"], registry=r
        )
        self.images_scored = Counter(
            "gan_images_discriminated", "images scored by D", ["model", "version"], registry=r
        )
        self.batch_size = Histogram(
            "gan_batch_size",
            "rows per engine call",
            ["model", "role"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "gan_queue_depth", "rows waiting for an engine call", ["model", "role"], registry=r
        )
        self.loaded_version = Gauge(
            "gan_model_loaded_version", "version served by default", ["model"], registry=r
        )
        self.reloads = Counter("gan_model_reloads", "hot swaps of a model", ["model"], registry=r)
        self.load_failures = Counter(
            "gan_model_load_failures", "versions refused at load", ["model"], registry=r
        )
        self.engine_restarts = Counter(
            "gan_engine_restarts",
            "engine processes started again after dying or hanging",
            ["model"],
            registry=r,
        )
        self.artifacts_ok = Gauge(
            "gan_model_artifacts_ok",
            "1 while the serving version's files on disk match their manifest sha256, else 0",
            ["model", "version"],
            registry=r,
        )
        self.cache_hits = Counter(
            "gan_response_cache_hits", "samples answered from the response cache", registry=r
        )
        self.cache_misses = Counter(
            "gan_response_cache_misses", "cacheable samples drawn anew", registry=r
        )
        self.cache_bytes = Gauge(
            "gan_response_cache_bytes", "bytes of response bodies held in memory", registry=r
        )


class JobsCollector(Collector):
    """Job counts by state and running jobs' progress, read from the shared store per scrape,
    so every replica reports the same figures whichever one ran the job."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        jobs = self.store.list()
        by_state = GaugeMetricFamily("gan_jobs", "jobs by state", labels=["state"])
        for state in ("queued", "running", "succeeded", "failed", "cancelled"):
            by_state.add_metric([state], sum(j.state == state for j in jobs))
        yield by_state
        progress = GaugeMetricFamily(
            "gan_job_progress_ratio", "step / max_steps of running jobs", labels=["job", "model"]
        )
        rate = GaugeMetricFamily(
            "gan_job_images_per_second", "training throughput of running jobs", labels=["job"]
        )
        for job in jobs:
            if job.state == "running" and job.progress.max_steps:
                progress.add_metric([job.id, job.model], job.progress.step / job.progress.max_steps)
                rate.add_metric([job.id], job.progress.images_per_s or 0.0)
        yield progress
        yield rate
