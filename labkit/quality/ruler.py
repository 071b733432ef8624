"""The quality ruler: every figure of one (reference, test) pair, and a verdict a listener
would sign.

:func:`measure` aligns the test to the reference (:mod:`labkit.quality.align`: a constant
delay, then time warping where the lengths differ) and reads:

* ``level_db`` -- how much louder the test's active speech is (the test is then
  level-matched, so loudness does not read as spectrum);
* ``masked_lsd_db`` / ``masked_lsd_peak_db`` -- the distance in auditory bands above the
  masked threshold (:mod:`labkit.quality.bands`), its mean over audible frames (steady
  damage: hiss, dullness) and its worst 5 ms frame (a click, a dropout);
* ``gap_ms`` -- the longest stretch in which the test falls 20 dB or more under the
  reference while the reference speaks (5 ms windows, 1 ms steps);
* ``lag_ms`` and ``length_diff_ms`` -- the timing the alignment removed: a constant delay
  between files of the same length, or the length difference that time warping absorbed
  (``warped``); reported, timing is a figure of its own with its own bound where a stage
  sets one;
* the field's standard figures beside them (``lsd_db``, ``pesq_wb``, ``stoi``), and, with
  the text, each side's word error rate by an independent recognizer
  (:mod:`labkit.quality.recognizer`).

:func:`verdict` holds the bounded figures against :data:`BOUNDS` (``labkit/data/ruler.yaml``),
set on the calibration ladder (:mod:`labkit.quality.ladder`): each bound lies between the
highest reading of an inaudible change and the lowest of the audible changes that figure
separates, on utterances of the development set; the held-out set then checks that every
inaudible rung passes and every audible one fails. A pair passes when every bounded
figure is within its bound. The standard figures never decide: the ladder shows each one
reading some inaudible change as worse than some audible one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import yaml

from labkit.config import DATA_DIR
from labkit.quality import align, bands, standard
from labkit.quality.signal import QualityError, as_audio, resample
from labkit.kokoro import SAMPLE_RATE

#: the figures a verdict bounds, and how each is read against its bound
BOUNDED = {"level_db": "abs", "masked_lsd_db": "max", "masked_lsd_peak_db": "max", "gap_ms": "max"}
#: where the bounds live (written from a calibration, read here)
BOUNDS_FILE = DATA_DIR / "ruler.yaml"
#: a length difference past this many samples is aligned by time warping (one band frame)
WARP_AFTER = bands.HOP
#: time-warped comparisons use band frames every 1 ms (a 5 ms grid reads a sub-frame
#: misalignment at every onset as a change)
WARP_HOP = 24
#: the time-warping band either side of the diagonal (s)
WARP_BAND_S = 0.5
#: gap: 5 ms windows every 1 ms; the test this far under the reference is silent there
GAP_WINDOW, GAP_STEP, GAP_DROP_DB = 120, 24, 20.0
#: ... where the reference speaks: within this many dB of its loudest 5 % of windows
GAP_SPEECH_DB = 30.0


def load_bounds(path=BOUNDS_FILE) -> dict[str, Any]:
    """The ruler's bounds and their provenance (``labkit/data/ruler.yaml``)."""
    data = yaml.safe_load(open(path, encoding="utf-8"))
    missing = sorted(set(BOUNDED) - set(data.get("bounds", {})))
    if missing:
        raise QualityError(f"{path}: no bound for {missing}")
    return data


BOUNDS: dict[str, float] = {k: float(v["bound"]) for k, v in load_bounds()["bounds"].items()}


def _levels(x: np.ndarray) -> np.ndarray:
    if x.size < GAP_WINDOW:
        x = np.pad(x, (0, GAP_WINDOW - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, GAP_WINDOW)[::GAP_STEP]
    return 10.0 * np.log10((frames ** 2).mean(axis=1) + 1e-20)


def gap_ms(ref: np.ndarray, test: np.ndarray, path: tuple[np.ndarray, np.ndarray] | None = None,
           path_hop: int = WARP_HOP) -> float:
    """The longest run (ms) of 5 ms windows where ``ref`` speaks and ``test`` (aligned,
    level-matched) is :data:`GAP_DROP_DB` or more under it; with ``path`` (band frames
    every ``path_hop`` samples, :func:`warp_path`) each reference window is read against
    the test window the path maps it to."""
    a, b = _levels(ref), _levels(test)
    if path is None:
        n = min(a.size, b.size)
        a, matched = a[:n], b[:n]
    else:
        per = max(1, path_hop // GAP_STEP)  # gap windows per band frame
        band_i = np.minimum(np.arange(a.size) // per, path[1].size - 1)
        shift = (path[1][band_i] - path[0][band_i]) * per
        matched = b[np.clip(np.arange(a.size) + shift, 0, b.size - 1)]
    speech = a > np.percentile(a, 95) - GAP_SPEECH_DB
    silent = speech & (a - matched >= GAP_DROP_DB)
    longest = run = 0
    for v in silent:
        run = run + 1 if v else 0
        longest = max(longest, run)
    return longest * GAP_STEP / SAMPLE_RATE * 1000.0


def warp_path(ref: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Band frames of ``test`` matched to ``ref``'s by time warping on their levels in the
    auditory bands (dB, floored 80 dB under the louder peak), every :data:`WARP_HOP`
    samples."""
    pr, pt = bands.band_power(ref, WARP_HOP), bands.band_power(test, WARP_HOP)
    floor = max(float(pr.max()), float(pt.max()), 1e-30) * 1e-8
    lr, lt = 10 * np.log10(np.maximum(pr, floor)), 10 * np.log10(np.maximum(pt, floor))
    return align.dtw_path(lr, lt, int(WARP_BAND_S * SAMPLE_RATE / WARP_HOP))


@dataclass
class Figures:
    ok: bool
    problems: list[str] = field(default_factory=list)
    level_db: float | None = None
    masked_lsd_db: float | None = None
    masked_lsd_peak_db: float | None = None
    gap_ms: float | None = None
    lag_ms: float | None = None
    length_diff_ms: float | None = None
    warped: bool = False
    lsd_db: float | None = None
    pesq_wb: float | None = None
    stoi: float | None = None
    wer_ref: float | None = None
    wer_test: float | None = None
    heard_ref: str | None = None
    heard_test: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(ref: Any, test: Any, sr: int = SAMPLE_RATE, text: str | None = None,
            standard_figures: bool = True,
            recognize: Callable[[np.ndarray, str], dict] | None = None) -> Figures:
    """Every figure of ``test`` against ``ref`` (see the module's doc). Audio at another
    rate is resampled to 24 kHz first. A test with NaN, silence or clipping is not
    measured (``ok`` False, ``problems`` say why); a reference that cannot be compared
    raises :class:`QualityError`. ``recognize(audio, text)`` (e.g.
    :func:`labkit.quality.recognizer.word_error_rate`) adds each side's word error rate
    when ``text`` is given."""
    a = resample(as_audio(ref, "reference"), sr, SAMPLE_RATE)
    b = np.asarray(test, np.float64).ravel()
    ref_problems = standard.check_audio(a)
    if ref_problems:
        raise QualityError(f"the reference cannot be compared: {'; '.join(ref_problems)}")
    problems = standard.check_audio(b)
    if problems:
        return Figures(ok=False, problems=problems)
    b = resample(b, sr, SAMPLE_RATE)
    # the same length: at most a constant delay (a player's, a codec's); lengths that
    # differ: timing changed somewhere inside, so frames are matched by time warping
    warped = abs(a.size - b.size) > WARP_AFTER
    lag = 0 if warped else align.lag(a, b)
    a2, b2 = align.trim_to_lag(a, b, lag)
    path = warp_path(a2, b2) if warped else None
    level = bands.level_db(a2, b2)
    b2 = b2 * 10.0 ** (-level / 20.0)
    dist = bands.masked_lsd(a2, b2, path, hop=WARP_HOP if warped else bands.HOP)
    out = Figures(ok=True, level_db=level, masked_lsd_db=dist.mean_db,
                  masked_lsd_peak_db=dist.peak_db, gap_ms=gap_ms(a2, b2, path),
                  lag_ms=lag / SAMPLE_RATE * 1000.0,
                  length_diff_ms=(b.size - a.size) / SAMPLE_RATE * 1000.0, warped=warped)
    if standard_figures:
        n = min(a2.size, b2.size)
        out.lsd_db = (standard.aligned_lsd_db(a2, b2) if warped
                      else standard.lsd_db(a2[:n], b2[:n]))
        try:
            out.pesq_wb = standard.pesq_wb(a, b)
        except QualityError as exc:
            problems.append(str(exc))
        out.stoi = standard.stoi(a2[:n], b2[:n])
    if text and recognize is not None:
        r, t = recognize(a, text), recognize(b, text)
        out.wer_ref, out.heard_ref = r["wer"], r["heard"]
        out.wer_test, out.heard_test = t["wer"], t["heard"]
    return out


@dataclass
class Verdict:
    passed: bool
    checks: dict[str, dict[str, Any]]
    reasons: list[str]

    @property
    def word(self) -> str:
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.word, "checks": self.checks, "reasons": self.reasons}


def verdict(fig: Figures | dict[str, Any], bounds: dict[str, float] | None = None) -> Verdict:
    """Each bounded figure against its bound; passed only when every one is within it
    (a test that could not be measured fails, with its problems as the reasons)."""
    f = fig.to_dict() if isinstance(fig, Figures) else dict(fig)
    bounds = BOUNDS if bounds is None else bounds
    if not f.get("ok"):
        return Verdict(False, {}, [f"not measured: {p}" for p in f.get("problems") or ["no figures"]])
    checks, reasons = {}, []
    for name, how in BOUNDED.items():
        value = f.get(name)
        if value is None:
            checks[name] = {"value": None, "bound": bounds[name], "passed": False}
            reasons.append(f"{name} not measured")
            continue
        read = abs(value) if how == "abs" else value
        ok = read <= bounds[name]
        checks[name] = {"value": value, "bound": bounds[name], "passed": ok}
        if not ok:
            reasons.append(f"{name} {value:+.2f} beyond ±{bounds[name]:g}" if how == "abs"
                           else f"{name} {value:.2f} > {bounds[name]:g}")
    return Verdict(not reasons, checks, reasons)


def judge(ref: Any, test: Any, sr: int = SAMPLE_RATE, **kwargs) -> tuple[Figures, Verdict]:
    fig = measure(ref, test, sr, **kwargs)
    return fig, verdict(fig)


def definition() -> str:
    """The ruler in one sentence, for records and the journal."""
    b = BOUNDS
    return ("quality ruler (labkit.quality.ruler): after alignment and level matching, the "
            f"distance in auditory (ERB) bands above the masked threshold, mean <= "
            f"{b['masked_lsd_db']:g} dB and worst 5 ms frame <= {b['masked_lsd_peak_db']:g} dB; "
            f"no gap longer than {b['gap_ms']:g} ms; level within ±{b['level_db']:g} dB; "
            "bounds set on the calibration ladder (labkit/data/ladder.yaml) and checked on "
            "held-out utterances; bounds apply to the worst utterance")
