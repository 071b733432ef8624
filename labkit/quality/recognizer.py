"""An independent listener: pocketsphinx's US-English recognizer (its PyPI wheel ships the
acoustic model, the dictionary and a language model; nothing is downloaded).

It is a modest recognizer -- it gets about a fifth of the words of Kokoro's own reference
audio wrong -- so its figures are relative: a variant is held against the reference's
word error rate on the same utterances, never against zero. What it adds is independence:
it does not read the model's durations, so a dropped or garbled word is caught where the
model itself would say the word was there.

* :func:`word_error_rate` -- recognize, then the word-level edit distance to the text,
  over the words of the text;
* :func:`align` -- forced alignment of the text to the audio (pocketsphinx's alignment
  search): each word's start and end as the recognizer hears them, for ``labkit verify``;
* :func:`words` -- the text as the recognizer's vocabulary spells it (lower case, digits
  spelt out, punctuation dropped).

Audio is resampled to 16 kHz and scaled to 90 % of full scale (the recognizer's features
are level-normalized per utterance, so the scale only avoids clipping).

pocketsphinx decodes on one core and takes about 1.3 s for a 10 s sentence; stages 03 and
07 recognize over a hundred (each held-out sentence under every inaudible rung of the
ladder: the recognizer's jitter). So :func:`transcribe_all` spreads a batch over worker
processes (``python -m labkit.quality.recognizer_worker``, one per core the machine's
sessions would use), and every transcript is kept by the audio's content. Both rest on a
decode that depends only on the samples it is given: each utterance is decoded by a
decoder as freshly made (:func:`_decoder`; pocketsphinx's own carries state from one
utterance into the next), which ``tests/test_ruler.py`` checks, so the same audio is
recognized once, and in whichever process.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Iterable, Sequence

import numpy as np
from num2words import num2words

from labkit import procs
from labkit.host import machine
from labkit.kokoro import SAMPLE_RATE
from labkit.quality.signal import as_audio, resample

RATE = 16_000
#: pocketsphinx counts frames of 10 ms
FRAME_S = 0.01
_lock = threading.Lock()
_decoders: dict[str, Any] = {}


def _decoder():
    """The process's decoder as freshly made (loading the model takes about a quarter of a
    second). A pocketsphinx decoder carries state from one utterance into the next (its
    noise estimate among it: with cepstral mean normalization off, a sentence is still
    heard differently after another one), so a decoder that has heard something is
    re-initialized first: every utterance is heard as if it came first, whatever was
    recognized before it, in this process or in a worker."""
    if "d" not in _decoders:
        from pocketsphinx import Decoder  # a native library: loaded when first needed
        _decoders["d"] = Decoder(samprate=RATE, loglevel="FATAL")
    elif _decoders.get("used"):
        _decoders["d"].reinit()
    _decoders["used"] = True
    return _decoders["d"]


def _pcm(audio: np.ndarray, sr: int) -> bytes:
    x = resample(as_audio(audio, "audio"), sr, RATE)
    peak = float(np.max(np.abs(x))) or 1.0
    return (np.clip(x / peak * 0.9, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


def words(text: str) -> list[str]:
    """``text`` as lower-case words of letters and apostrophes, numbers spelt out."""
    text = re.sub(r"(\d+(?:\.\d+)?)", lambda m: f" {num2words(float(m.group(1)) if '.' in m.group(1) else int(m.group(1)))} ", text)
    text = text.lower().replace("-", " ").replace("\u2019", "'")
    return re.findall(r"[a-z]+(?:'[a-z]+)*", text)


def hypothesis(pcm: bytes) -> str:
    """The recognizer's transcript of 16 kHz 16-bit mono ``pcm``, in this process."""
    with _lock:
        d = _decoder()  # as freshly made: its language-model search
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
    return hyp.hypstr if hyp is not None else ""


#: transcripts already made, by the content of the audio the decoder read
_heard: OrderedDict[str, str] = OrderedDict()
KEPT = 4096


def _key(pcm: bytes) -> str:
    return hashlib.sha1(pcm).hexdigest()


def transcribe(audio: np.ndarray, sr: int = SAMPLE_RATE) -> str:
    """What the recognizer hears (its language model's best guess), lower case."""
    return transcribe_all([audio], sr)[0]


def transcribe_all(clips: Iterable[np.ndarray], sr: int = SAMPLE_RATE,
                   workers: int | None = None) -> list[str]:
    """:func:`transcribe` of each clip, in order (an iterator is read one clip at a time:
    only the 16 kHz copies are kept). Clips already heard are not decoded again; the rest
    are decoded in ``workers`` processes at once (None: the cores a session would use,
    labkit.host.machine.thread_plan; 1, or a single clip: here)."""
    pcms = [_pcm(a, sr) for a in clips]
    keys = [_key(p) for p in pcms]
    todo = {k: p for k, p in zip(keys, pcms) if k not in _heard}
    n = min(len(todo), machine.thread_plan().threads if workers is None else workers)
    found = _in_workers(list(todo.items()), n) if n > 1 else \
        {k: hypothesis(p) for k, p in todo.items()}
    _heard.update(found)
    out = [_heard[k] for k in keys]
    for k in keys:
        _heard.move_to_end(k)
    while len(_heard) > KEPT:
        _heard.popitem(last=False)
    return out


#: how a worker is started (after ``sys.executable``)
WORKER = ("-m", "labkit.quality.recognizer_worker")


class RecognizerError(RuntimeError):
    """A recognizer worker process failed (its stderr's last lines are in the message)."""


def _worker_env() -> dict[str, str]:
    """This process's environment, with this checkout's labkit first on the path (a
    worktree's package, not the one the virtual environment installed)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _in_workers(jobs: list[tuple[str, bytes]], n: int) -> dict[str, str]:
    """Decode ``jobs`` (key, pcm) in ``n`` worker processes, each taking the next job when
    it is free (longest first, so no worker is left with a long one at the end)."""
    queue: SimpleQueue = SimpleQueue()
    for job in sorted(jobs, key=lambda j: -len(j[1])):
        queue.put(job)
    found: dict[str, str] = {}
    errors: list[str] = []

    def serve(proc: subprocess.Popen, log) -> None:
        try:
            while not errors:
                try:
                    key, pcm = queue.get_nowait()
                except Empty:
                    return
                proc.stdin.write(struct.pack("<Q", len(pcm)) + pcm)
                proc.stdin.flush()
                head = proc.stdout.read(8)
                if len(head) < 8:
                    raise EOFError("it answered nothing")
                found[key] = proc.stdout.read(struct.unpack("<Q", head)[0]).decode()
        except (OSError, EOFError, ValueError) as exc:
            try:
                ended = procs.exit_words(proc.wait(10))
            except subprocess.TimeoutExpired:
                ended = "still running"
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
            errors.append(f"{exc} ({ended}); its stderr: {' | '.join(tail) or '(nothing)'}")

    logs = [tempfile.TemporaryFile() for _ in range(n)]
    workers = [procs.popen([sys.executable, *WORKER],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                           env=_worker_env()) for log in logs]
    try:
        threads = [threading.Thread(target=serve, args=(w, log), daemon=True)
                   for w, log in zip(workers, logs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for w in workers:
            with contextlib.suppress(OSError):
                w.stdin.close()  # end of input: the worker returns
            procs.stop(w, grace_s=5.0)
        for log in logs:
            log.close()
    if errors:
        raise RecognizerError(f"a recognizer worker failed: {errors[0]}")
    return found


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions, deletions, insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_error_rate(audio: np.ndarray, text: str, sr: int = SAMPLE_RATE) -> dict[str, Any]:
    """{"wer", "errors", "words", "heard"}: the recognizer's transcript of ``audio`` against
    ``text`` (errors over the text's words)."""
    return scored(transcribe(audio, sr), text)


def word_error_rates(audio: dict[str, np.ndarray], texts: dict[str, str],
                     sr: int = SAMPLE_RATE) -> dict[str, dict[str, Any]]:
    """:func:`word_error_rate` of each utterance (``texts[key]`` for ``audio[key]``), the
    batch recognized at once (:func:`transcribe_all`)."""
    keys = list(audio)
    heard = transcribe_all([audio[k] for k in keys], sr)
    return {k: scored(h, texts[k]) for k, h in zip(keys, heard)}


def scored(heard: str, text: str) -> dict[str, Any]:
    """:func:`word_error_rate`'s figures for a transcript ``heard`` of ``text``."""
    want = words(text)
    errors = edit_distance(want, heard.split())
    return {"wer": errors / max(1, len(want)), "errors": errors, "words": len(want), "heard": heard}


def corpus_wer(results: Sequence[dict[str, Any]]) -> float | None:
    """Errors over words, summed over utterances (``word_error_rate`` results)."""
    n = sum(r["words"] for r in results)
    return sum(r["errors"] for r in results) / n if n else None


def align(audio: np.ndarray, text: str, sr: int = SAMPLE_RATE) -> dict[str, Any]:
    """Forced alignment of ``text`` to ``audio``: {"words": [{"word", "start", "end"}],
    "unknown": words the recognizer's dictionary lacks (left out of the alignment),
    "aligned": False when the recognizer could not align the text at all}. A word the
    audio does not hold is still placed, squeezed to a few frames or into silence: the
    caller checks each span (labkit.measure.coverage)."""
    want = words(text)
    pcm = _pcm(audio, sr)
    with _lock:
        d = _decoder()
        known = [w for w in want if d.lookup_word(w) is not None]
        unknown = [w for w in want if d.lookup_word(w) is None]
        if not known:
            return {"words": [], "unknown": unknown, "aligned": False}
        d.set_align_text(" ".join(known))
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        segs = [(s.word, s.start_frame, s.end_frame) for s in (d.seg() or [])]
        d.activate_search()
    spoken = [(re.sub(r"\(\d+\)$", "", w), a, b) for w, a, b in segs
              if not w.startswith("<") and not w.startswith("[") and w != "<sil>"]
    if len(spoken) != len(known):
        return {"words": [], "unknown": unknown, "aligned": False}
    return {"words": [{"word": w, "start": a * FRAME_S, "end": (b + 1) * FRAME_S} for w, a, b in spoken],
            "unknown": unknown, "aligned": True}
