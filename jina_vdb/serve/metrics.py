"""Prometheus metrics (prometheus-client), in a registry per app: no global state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .batcher import BatchStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Request latency per route, queue depth, batch sizes, tokens embedded."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "jina_vdb_request_seconds",
            "Request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "jina_vdb_queue_depth", "Requests waiting for the model worker.", registry=r
        )
        self.batch_requests = Histogram(
            "jina_vdb_batch_requests",
            "Requests merged into one model call.",
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_items = Histogram(
            "jina_vdb_batch_items", "Inputs in one model call.", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "jina_vdb_batch_seconds",
            "Model time of one batched call.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "jina_vdb_queue_wait_seconds",
            "Oldest request's wait in the queue before its batch ran.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # tokens/s is rate(jina_vdb_tokens_total[1m]) in PromQL.
        self.tokens = Counter("jina_vdb_tokens", "Tokens embedded.", registry=r)
        self.task_switches = Counter(
            "jina_vdb_task_switches",
            "Batches that switched the model's LoRA task (a re-merge of the weights).",
            registry=r,
        )
        self.rejected = Counter(
            "jina_vdb_rejected", "Requests refused because the queue was full.", registry=r
        )

    def on_batch(self, stats: BatchStats) -> None:
        self.batch_requests.observe(stats.requests)
        self.batch_items.observe(stats.items)
        self.batch_seconds.observe(stats.seconds)
        self.queue_wait.observe(stats.queue_wait_s)
        self.tokens.inc(stats.tokens)
        if stats.task_switch:
            self.task_switches.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
