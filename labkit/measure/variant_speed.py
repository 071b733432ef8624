"""The speed of model variants against a baseline: feeds of a chosen token length, session
load time, and the warm wall time of one ``session.run`` on the same feeds for every variant
against the baseline's through the one instrument (labkit.measure.compare: interleaved
rounds, paired ratios with a bootstrap 95 % interval, an A/A control). Stage 03's bench
(labkit.measure.variant_bench) times its variants with it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labkit.engine.graph_cache import make_session
from labkit.engine.sessions import kokoro_feeds, style_row
from labkit.kokoro import MAX_TOKENS, VOCAB
from labkit.measure.compare import Comparison, compare, schedule
from labkit.timing import Timing

#: what the speed comparison times: the warm wall time of one ``session.run`` on the same
#: feeds (seconds), at the stage's representative length (``speed_tokens``)
CRITERION = "warm_s"


def token_probe(prepared: Sequence, n_tokens: int, voices) -> dict[str, np.ndarray]:
    """Feeds of exactly ``n_tokens`` tokens: held-out phonemes concatenated (with a space)
    and cut, voice and speed of the first utterance. For RTF at a chosen length."""
    if not 1 <= n_tokens <= MAX_TOKENS:
        raise ValueError(f"n_tokens={n_tokens}: Kokoro takes 1 to {MAX_TOKENS} tokens")
    toks: list[int] = []
    while len(toks) < n_tokens:
        for p in prepared:
            toks += p.tokens + [VOCAB[" "]]
    toks = toks[:n_tokens]
    first = prepared[0]
    pack = voices.pack(first.utt.voice)
    return kokoro_feeds(toks, style_row(pack, n_tokens))


def load_seconds(model: Path, session_cfg, repeats: int = 1) -> Timing:
    samples = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        sess = make_session(model, session_cfg)
        samples.append(time.perf_counter() - t0)
        del sess
    return Timing.of(samples)


def speed_compare(sessions: dict[str, Any], probes: dict[int, dict], baseline: str,
                  rounds: int | None = None, warmup: int = 1,
                  criterion_tokens: int | None = None) -> dict[int, Comparison]:
    """Per probe length, the wall time of ``session.run`` on the same feeds for every
    session against ``baseline``'s, through the one instrument (labkit.measure.compare:
    interleaved rounds whose order changes, paired ratios with a bootstrap 95 % interval,
    an A/A control). Each call's output length is kept (``Comparison.kept``) for the RTF.
    With ``criterion_tokens``, only that length's comparison adds rounds on a noisy machine
    (the one the journal chooses on); the other lengths, reported only, run ``rounds``."""
    if baseline not in sessions:
        raise KeyError(f"baseline {baseline!r} has no session (it did not load); "
                       f"sessions: {list(sessions)}")
    out: dict[int, Comparison] = {}
    for n, feeds in probes.items():
        fns = {name: (lambda s=sess, f=feeds: s.run(None, f)) for name, sess in sessions.items()}
        square = len(schedule(len(fns) + 1))  # + the A/A control
        k = rounds if rounds is not None else square * -(-6 // square)
        cap = None if criterion_tokens is None or n == criterion_tokens else k
        out[n] = compare(fns, baseline, rounds=k, max_rounds=cap, warmup=warmup,
                         criterion=CRITERION, keep=lambda res: int(np.size(res[0])))
    return out


def paired_speedup(cmp: Comparison, over: str, name: str) -> float | None:
    """Median over rounds of ``over``'s time / ``name``'s time in the same round (how many
    times faster than ``over``), from one comparison's samples; None where either is absent."""
    if over not in cmp.entries or name not in cmp.entries:
        return None
    a = np.asarray(cmp.entries[over].samples)
    b = np.asarray(cmp.entries[name].samples)
    return float(np.median(a / b))
