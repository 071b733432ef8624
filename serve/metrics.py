"""Prometheus metrics of one app (its own registry, so several apps can coexist).

Errors (``kokoro_errors_total{kind}``) are the server's and the request's faults; a client
that goes away (mid-body or mid-stream) is a client event, counted apart in
``kokoro_client_disconnects_total{stage}``. Pipeline retries and G2P fallbacks (words
misaki did not know, read by espeak) are counted too; G2P counts are read from
labkit.engine.g2p's shared G2Ps, and the piece cache's hits and misses from the cache
(labkit.engine.piece_cache), at scrape time."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from labkit.engine import g2p
from labkit.engine.piece_cache import PieceCache

TTFA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0)
RTF_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, cache: PieceCache | None = None):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("kokoro_requests", "Speech requests by outcome",
                                ["format", "stream_format", "status"], registry=r)
        self.ttfa = Histogram("kokoro_ttfa_seconds",
                              "Request arrival to the first audio bytes handed to the server",
                              buckets=TTFA_BUCKETS, registry=r)
        self.rtf = Histogram("kokoro_rtf", "Synthesis seconds over audio seconds, per request",
                             buckets=RTF_BUCKETS, registry=r)
        self.audio_seconds = Counter("kokoro_audio_seconds", "Audio produced", registry=r)
        self.errors = Counter("kokoro_errors", "Errors by kind", ["kind"], registry=r)
        self.cancelled = Counter("kokoro_cancelled",
                                 "Syntheses stopped early because the client went away",
                                 registry=r)
        self.aborted = Counter("kokoro_pieces_aborted",
                               "Pieces aborted mid-synthesis when their request was cancelled "
                               "(RunOptions.terminate), not synthesized to the end", registry=r)
        self.client_disconnects = Counter(
            "kokoro_client_disconnects", "Clients that went away: before their body arrived "
            "(body) or during the audio (stream)", ["stage"], registry=r)
        self.pipeline_retries = Counter(
            "kokoro_pipeline_retries", "Pieces retried after a session failed on them", registry=r)
        self.pipeline_failures = Counter(
            "kokoro_pipeline_failures", "Failed synthesis attempts of a piece (retried or not)",
            registry=r)
        self.busy = Gauge("kokoro_busy", "Syntheses running now", registry=r)
        self.ready = Gauge("kokoro_ready", "1 once the model is loaded and warmed up",
                           registry=r)

        r.register(_G2PCollector())
        if cache is not None:
            r.register(_CacheCollector(cache))

    def error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CacheCollector(Collector):
    """The piece cache's lookups, read when scraped."""

    def __init__(self, cache: PieceCache):
        self.cache = cache

    def collect(self):
        yield CounterMetricFamily("kokoro_cache_hits", "Pieces served from the phrase/primer cache",
                                  value=self.cache.hits)
        yield CounterMetricFamily("kokoro_cache_misses", "Pieces synthesized",
                                  value=self.cache.misses)


class _G2PCollector(Collector):
    """G2P counts and the engine in use, per language, read when scraped."""

    def collect(self):
        fallback = CounterMetricFamily("kokoro_g2p_fallback_words",
                                       "Words misaki did not know, read by espeak", labels=["lang"])
        unknown = CounterMetricFamily("kokoro_g2p_unknown_words",
                                      "Words neither misaki nor espeak could read", labels=["lang"])
        espeak = GaugeMetricFamily("kokoro_g2p_degraded",
                                   "1 where misaki is unavailable and espeak reads everything",
                                   labels=["lang"])
        by_lang: dict[str, list[float]] = {}
        for g in g2p.loaded():  # one per (language, fallback on/off): summed per language
            row = by_lang.setdefault(g.lang, [0.0, 0.0, 0.0])
            row[0] += g.counts["fallback_words"]
            row[1] += g.counts["unknown_words"]
            row[2] = max(row[2], float(g.engine != "misaki"))
        for lang, (fb, unk, degraded) in sorted(by_lang.items()):
            fallback.add_metric([lang], fb)
            unknown.add_metric([lang], unk)
            espeak.add_metric([lang], degraded)
        yield from (fallback, unknown, espeak)
