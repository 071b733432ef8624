"""What long work costs on this machine: constants measured here and recorded, so a
command can say before it starts what it will run and about how long it will take.

The constants (:class:`Costs`) are measured by :func:`measure` -- a session built and one
sentence synthesized with the configuration being planned for, a few seconds -- and
recorded in ``artifacts/costs.json`` with the machine they were measured on (its cores,
its CPU, the variant, thread count and onnxruntime version). :func:`current` reads the record when it was made
for the same configuration on the same machine, and measures (and records) otherwise.

The arithmetic is deliberately plain: a planned call costs the audio it synthesizes times
the real-time factor, and audio is words times seconds per word. For another machine,
:meth:`Costs.for_cores` scales the compute-bound constants by the ratio of thread
counts (an upper bound on the gain: memory bandwidth and other cores' work do not scale).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import onnxruntime as ort

from labkit import files
from labkit.host import machine
from labkit.config import LabConfig
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.kokoro import SAMPLE_RATE
from labkit.measure.texts import named, word_count

COSTS_NAME = "costs.json"
#: the text :func:`measure` synthesizes (a ~20-word sentence of the benchmark paragraph)
PROBE_TEXT = "sentence"
#: load average per usable CPU above which a machine is busy: a measurement made then is
#: slower than the batch will be (a record measured beside a layer sweep read RTF 1.06;
#: quiet, the same configuration runs near 0.4)
BUSY_LOAD = 0.5


def load_per_cpu() -> float:
    """The 1-minute load average per CPU this process may use (0 where the OS keeps none)."""
    try:
        one = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    return one / max(1, machine.current().usable_cpus or 1)


@dataclass(frozen=True)
class Costs:
    #: synthesis seconds per second of audio (the pipeline, warm)
    rtf: float
    #: seconds of audio per word of text, and per phoneme token
    audio_s_per_word: float
    audio_s_per_token: float
    #: building the configured engine and its first (warm-up) run
    session_s: float
    #: the intra-op threads the constants were measured with
    threads: int
    variant: str
    cpu: str
    measured: str
    #: the onnxruntime the constants were measured with (a new one is measured again)
    onnxruntime: str = ort.__version__
    #: the machine's 1-minute load average per usable CPU when the measurement began
    #: (None: not recorded); above :data:`BUSY_LOAD` the constants were measured beside
    #: other work, and are measured again once the machine is quiet
    load: float | None = None

    @property
    def under_load(self) -> bool:
        return self.load is not None and self.load > BUSY_LOAD

    def audio_s(self, text: str) -> float:
        return word_count(text) * self.audio_s_per_word

    def synth_s(self, text: str) -> float:
        """Seconds to synthesize ``text`` warm."""
        return self.audio_s(text) * self.rtf

    def run_s(self, tokens: int) -> float:
        """Seconds of one warm model run on ``tokens`` phoneme tokens."""
        return tokens * self.audio_s_per_token * self.rtf

    def for_cores(self, threads: int) -> "Costs":
        """The compute-bound constants scaled to ``threads`` intra-op threads (optimistic:
        see the module doc)."""
        k = self.threads / threads
        return replace(self, rtf=self.rtf * k, session_s=self.session_s * k, threads=threads)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def costs_path(cfg: LabConfig) -> Path:
    return cfg.resolve(cfg.artifacts_dir) / COSTS_NAME


def measure(cfg: LabConfig) -> Costs:
    """Build the configured engine (timed, with its warm-up) and synthesize the probe
    sentence four times (the median of the last three)."""
    text = named(PROBE_TEXT)
    load = load_per_cpu()
    t0 = time.perf_counter()
    synth = StreamingSynthesizer.from_config(cfg)
    for e in synth.engines:
        e.warm_up()
    session_s = time.perf_counter() - t0
    synth.synthesize(text)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        audio = synth.synthesize(text)
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    audio_s = len(audio) / SAMPLE_RATE
    tokens = sum(p.tokens for p in synth.iter_pieces(text))
    return Costs(rtf=seconds / audio_s, audio_s_per_word=audio_s / word_count(text),
                 audio_s_per_token=audio_s / tokens,
                 session_s=session_s, threads=machine.session_threads(cfg.session),
                 variant=cfg.variant, cpu=machine.current().cpu,
                 measured=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 load=round(load, 2))


def record(cfg: LabConfig, costs: Costs) -> Path:
    return files.write_json(costs_path(cfg), costs.to_dict(), indent=2)


def recorded(cfg: LabConfig, load_now: float | None = None) -> Costs | None:
    """The recorded constants, when they were measured for ``cfg``'s variant and thread
    count on this CPU, and not under load while the machine is quiet now (``load_now``:
    load per CPU, default :func:`load_per_cpu`); else None."""
    try:
        data = json.loads(costs_path(cfg).read_text())
        costs = Costs(**data)
    except (OSError, ValueError, TypeError):
        return None
    same = (costs.variant == cfg.variant and costs.cpu == machine.current().cpu
            and costs.threads == machine.session_threads(cfg.session)
            and costs.onnxruntime == ort.__version__)
    if same and costs.under_load:
        same = (load_per_cpu() if load_now is None else load_now) > BUSY_LOAD
    return costs if same else None


def current(cfg: LabConfig) -> tuple[Costs, str]:
    """(the constants for ``cfg`` on this machine, where they came from): the record, or
    a measurement made now and recorded."""
    costs = recorded(cfg)
    if costs is not None:
        busy = f", under load {costs.load:.2f} per CPU" if costs.under_load else ""
        return costs, f"measured {costs.measured}{busy} ({costs_path(cfg).name})"
    costs = measure(cfg)
    record(cfg, costs)
    busy = f", under load {costs.load:.2f} per CPU" if costs.under_load else ""
    return costs, f"measured now ({costs.session_s:.1f} s to build, RTF {costs.rtf:.2f}{busy}; " \
                  f"recorded in {costs_path(cfg).name})"
