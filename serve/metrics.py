"""Prometheus metrics of one app (its own registry, so several apps can coexist)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

TTFA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0)
RTF_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("kokoro_requests", "Speech requests by outcome",
                                ["format", "stream_format", "status"], registry=r)
        self.ttfa = Histogram("kokoro_ttfa_seconds",
                              "Request arrival to the first audio bytes handed to the server",
                              buckets=TTFA_BUCKETS, registry=r)
        self.rtf = Histogram("kokoro_rtf", "Synthesis seconds over audio seconds, per request",
                             buckets=RTF_BUCKETS, registry=r)
        self.audio_seconds = Counter("kokoro_audio_seconds", "Audio produced", registry=r)
        self.cache_hits = Counter("kokoro_cache_hits", "Pieces served from the phrase/primer cache",
                                  registry=r)
        self.cache_misses = Counter("kokoro_cache_misses", "Pieces synthesized", registry=r)
        self.errors = Counter("kokoro_errors", "Errors by kind", ["kind"], registry=r)
        self.cancelled = Counter("kokoro_cancelled",
                                 "Syntheses stopped early because the client went away",
                                 registry=r)
        self.busy = Gauge("kokoro_busy", "Syntheses running now", registry=r)
        self.ready = Gauge("kokoro_ready", "1 once the model is loaded and warmed up",
                           registry=r)

    def error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
