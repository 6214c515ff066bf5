"""What the QRS detector's tests build and compare: artefacts, flat lines and P waves without
QRS added to an ECG, beats found against a reference, and the start of a MIT-BIH record with
its reference beats. One copy each, shared by the ``test_qrs*.py`` files."""

import numpy as np
import pytest

from inference.beat_match import match_beats
from inference.evaluation.qrs import QRS_SYMBOLS

MITDB_FS_HZ = 360.0


def with_motion(
    ecg_mv: np.ndarray, fs_hz: float, at_s: float, duration_s: float, mv: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """``ecg_mv`` with 8 Hz motion artefact growing from ``mv[0]`` to ``mv[1]`` (mV) over
    ``duration_s`` from ``at_s``; the signal (a copy) and the artefact's end (s)."""
    ecg = ecg_mv.copy()
    samples = np.arange(round(at_s * fs_hz), round((at_s + duration_s) * fs_hz))
    amplitude_mv = np.linspace(mv[0], mv[1], len(samples))
    ecg[samples] += amplitude_mv * np.sin(2 * np.pi * 8.0 * samples / fs_hz)
    return ecg, at_s + duration_s


def flat_line(n_samples: int, fs_hz: float, noise_mv: float, hum_mv: float, seed: int):
    """What a flat line carries, from zero: white noise of ``noise_mv`` (standard deviation),
    0.2 mV of baseline wander at 0.15 Hz and ``hum_mv`` of 50 Hz mains hum."""
    t_s = np.arange(n_samples) / fs_hz
    noise = np.random.default_rng(seed).normal(0.0, noise_mv, n_samples)
    return noise + 0.2 * np.sin(2 * np.pi * 0.15 * t_s) + hum_mv * np.sin(2 * np.pi * 50.0 * t_s)


def p_waves_alone(duration_s: float, fs_hz: float, p_mv: float, seed: int) -> np.ndarray:
    """``duration_s`` of P waves without QRS (ventricular standstill), from zero: one every
    0.8 s (75 bpm) from 0.5 s, Gaussian, ``p_mv`` high and 22 ms wide like the generator's,
    on a baseline with 15 uV of white noise."""
    t_s = np.arange(round(duration_s * fs_hz)) / fs_hz
    p_waves = np.zeros_like(t_s)
    for centre_s in np.arange(0.5, duration_s, 0.8):
        p_waves += p_mv * np.exp(-0.5 * ((t_s - centre_s) / 0.022) ** 2)
    noise = np.random.default_rng(seed).normal(0.0, 0.015, len(t_s))
    return p_waves + noise


def assert_every_beat_found(reference, beats, fs_hz: float, from_sample: float) -> None:
    """From ``from_sample`` on, every ``reference`` beat is found among ``beats`` and none of
    ``beats`` is false (``match_beats``); the failure names the missed and the false ones."""
    reference = np.asarray(reference)
    beats = np.asarray(beats)
    matched_reference, matched_beats = match_beats(reference, beats, fs_hz)
    missed = np.setdiff1d(reference, reference[matched_reference])
    false = np.setdiff1d(beats, beats[matched_beats])
    missed, false = missed[missed > from_sample], false[false > from_sample]
    assert len(missed) == 0 and len(false) == 0, (missed, false)


def reference_beats(folder, name: str, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The QRS annotations (``QRS_SYMBOLS``) of the first ``n_samples`` of record ``name`` in
    ``folder``: their samples and their symbols. Skips without wfdb."""
    wfdb = pytest.importorskip("wfdb")
    annotation = wfdb.rdann(str(folder / name), "atr", sampto=n_samples)
    is_beat = np.array([symbol in QRS_SYMBOLS for symbol in annotation.symbol], dtype=bool)
    return np.asarray(annotation.sample)[is_beat], np.asarray(annotation.symbol)[is_beat]


def excerpt(folder, name: str, minutes: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The first channel (mV) of a MIT-BIH record's first ``minutes``, its reference beats
    (``reference_beats``), and its sampling rate in Hz. Skips without wfdb."""
    wfdb = pytest.importorskip("wfdb")
    n_samples = round(minutes * 60 * MITDB_FS_HZ)
    record = wfdb.rdrecord(str(folder / name), channels=[0], sampto=n_samples)
    reference, _ = reference_beats(folder, name, n_samples)
    return record.p_signal[:, 0], reference, float(record.fs)
