"""How the lab hears quality (layer 0, the bottom layer): the ruler, its ladder and the standard figures.
It may import numpy, scipy, the metric packages and labkit.kokoro; nothing of the engine or above.
It judges audio; how audio is made and timed is the engine's and labkit.measure's.

* :mod:`~labkit.quality.ruler` -- the ruler: every figure of a (reference, test) pair and a
  verdict against bounds set on the ladder;
* :mod:`~labkit.quality.ladder` -- the calibration ladder: changes of known audibility,
  the calibration that sets the bounds and the check that they hold;
* :mod:`~labkit.quality.bands` -- the distance in auditory bands above the masked threshold;
* :mod:`~labkit.quality.align` -- delay and time warping before anything is compared;
* :mod:`~labkit.quality.clicks` -- clicks found in one signal (seams: no reference);
* :mod:`~labkit.quality.recognizer` -- an independent listener (pocketsphinx): word error
  rate, and forced alignment of the text to the audio;
* :mod:`~labkit.quality.standard` -- the field's standard figures (LSD, PESQ-WB, STOI),
  reported beside the ruler and the measure of numerical drift;
* :mod:`~labkit.quality.signal` -- audio as the figures take it.

DNSMOS, a no-reference model run on an ONNX Runtime session, lives in
:mod:`labkit.measure.dnsmos` (sessions come from the engine, a layer above this one).
The names below are the standard figures' (``from labkit import quality``;
``quality.lsd_db``), kept where the lab reads them.
"""
from labkit.quality.signal import QualityError, as_audio, resample
from labkit.kokoro import SAMPLE_RATE
from labkit.quality.standard import (LSD_DEFINITION, aligned_lsd_db, check_audio, compare,
                                     duration_agreement, frame_distance, log_spectra, lsd_db,
                                     lsd_from_magnitudes, magnitude, pesq_wb, spectral_convergence,
                                     stoi, summary, within_bound)

__all__ = ["SAMPLE_RATE", "QualityError", "as_audio", "resample", "LSD_DEFINITION",
           "aligned_lsd_db", "check_audio", "compare", "duration_agreement", "frame_distance",
           "log_spectra", "lsd_db", "lsd_from_magnitudes", "magnitude", "pesq_wb",
           "spectral_convergence", "stoi", "summary", "within_bound"]
