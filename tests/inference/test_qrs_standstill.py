"""Ventricular standstill with P waves going on (complete heart block, Stokes-Adams): an asystole
the monitor must show as a pause, not as beats at the atrial rate.

On a flat baseline P waves stand out as much as QRS complexes do, so the recovery rule (levels
learnt again after 5 s without a beat, from peaks that stand out) read them as beats before the
standstill guard: MIT-BIH 118, 122, 230 and 115 below gave 42-68 false beats in 40 s. The
ordinary search-back took them too (114, 203, 207 below), before any recovery. Real-record cases
cut the P waves of MIT-BIH DS1 records' own beats and skip when the data folder is absent.
"""

import numpy as np
import pytest

from inference.qrs import StreamingQrsDetector, detect_qrs
from inference.signal import resample
from inference.synthetic import generate
from tests.inference.qrs_signals import p_waves_alone, reference_beats
from tests.inference.qrs_streaming import streamed_beats

STANDSTILL_S = 40.0
P_BEFORE_R_S = (0.25, 0.08)  # the P-wave stretch cut from each beat, before its R peak
T_END_AFTER_R_S = 0.45  # where the T-P stretch of each beat starts


def real_standstill(
    mitdb, record: str, beats_s: float = 20.0, read_s: float = 200.0, p_when_due: bool = False
) -> tuple[np.ndarray, int]:
    """``beats_s`` of the record from 60 s, then STANDSTILL_S of its own P waves (cut 250 to
    80 ms before each beat's R peak, from its first ``read_s``) at its own sinus rate on its own
    T-P stretches; the signal at 360 Hz and the sample where the standstill starts. The first
    P wave comes one RR after the standstill starts or, with ``p_when_due``, when the P wave of
    the next beat was due (one RR after the last R peak, 250 ms before it)."""
    wfdb = pytest.importorskip("wfdb")
    fs_hz = 360.0
    path = str(mitdb / record)
    stop = round(read_s * fs_hz)
    x = wfdb.rdrecord(path, channels=[0], sampto=stop).p_signal[:, 0]
    beats, symbols = reference_beats(mitdb, record, stop)
    normal = set(beats[np.isin(symbols, ["N", "L", "R"])])
    p_start, p_end = (round(s * fs_hz) for s in P_BEFORE_R_S)
    p_waves, t_p = [], []
    for before, beat in zip(beats[:-1], beats[1:], strict=True):
        if before not in normal or beat not in normal or not 0.5 < (beat - before) / fs_hz < 1.5:
            continue
        for stretch, into in (
            (x[beat - p_start : beat - p_end], p_waves),
            (x[before + round(T_END_AFTER_R_S * fs_hz) : beat - p_start], t_p),
        ):
            if len(stretch) > 10:  # each stretch detrended to start and end on the baseline
                into.append(stretch - np.linspace(stretch[0], stretch[-1], len(stretch)))
    start = round(60 * fs_hz)
    last_r = beats[beats < start + round(beats_s * fs_hz)].max()
    real = x[start : last_r + round(T_END_AFTER_R_S * fs_hz)]
    rr = round(float(np.median(np.diff(beats))))
    baseline = np.concatenate(t_p * 20)  # long enough for the whole standstill
    # baseline before the first P wave: one RR from the end of the real part, or up to where
    # the P wave of the next beat was due (none when the rhythm is too fast for that)
    if p_when_due:
        lead_in = max(0, rr - p_start - round(T_END_AFTER_R_S * fs_hz))
    else:
        lead_in = rr - len(p_waves[0])
    pieces, used = [], 0
    for k in range(round(STANDSTILL_S * fs_hz / rr)):
        p_wave = p_waves[k % len(p_waves)]
        gap = lead_in if k == 0 else rr - len(p_wave)
        pieces += [baseline[used : used + gap], p_wave]
        used += gap
    standstill = real[-1] + np.concatenate(pieces)
    return np.concatenate([real, standstill]), len(real)


@pytest.mark.parametrize(
    ("record", "fs_hz"), [("118", 128.0), ("122", 250.0), ("230", 360.0), ("115", 1000.0)]
)
def test_p_waves_of_a_real_record_without_qrs_give_no_beat(mitdb, record, fs_hz):
    ecg, standstill_start = real_standstill(mitdb, record)
    if fs_hz != 360.0:
        ecg = resample(ecg, 360.0, fs_hz)
    beats = detect_qrs(ecg, fs_hz)
    start = (standstill_start / 360.0 + 0.3) * fs_hz
    assert np.sum(beats < start) > 10  # the real beats before were found
    assert np.sum(beats > start) == 0, beats[beats > start] / fs_hz


# The pause alarm's default limit (monitoring.models.Patient.pause_limit_s)
PAUSE_LIMIT_S = 3.0


def standstill_false_beats(mitdb, record: str, fs_hz: float) -> np.ndarray:
    """Seconds from the standstill start of the beats found in it (from 0.3 s: the last real
    beat is final then), on the record's P waves from its first 11 minutes, the first one when
    the next beat was due; and checks that the real beats before were found."""
    ecg, standstill_start = real_standstill(mitdb, record, read_s=660.0, p_when_due=True)
    if fs_hz != 360.0:
        ecg = resample(ecg, 360.0, fs_hz)
    beats = detect_qrs(ecg, fs_hz) / fs_hz - standstill_start / 360.0
    assert np.sum(beats < 0.3) > 10
    return beats[beats > 0.3]


@pytest.mark.parametrize("fs_hz", [128.0, 360.0])
@pytest.mark.parametrize("record", ["114", "203", "207"])
def test_search_back_does_not_take_the_p_waves_of_a_standstill(mitdb, record, fs_hz):
    # Search-back at half the threshold took the tallest P wave 1.66 RR after the last beat;
    # the QRS level fell, the threshold followed, and the P waves became beats at the atrial
    # rate (37, 72 and 27 of them from 0.4, 3.6 and 17.4 s at 360 Hz): no pause alarm. Now it
    # takes nothing under 0.3 of the real beats' height. 203's and 207's P waves still give an
    # isolated beat (at 3.8 and 21.7 s at 360 Hz), after the pause alarm's default limit.
    false_beats = standstill_false_beats(mitdb, record, fs_hz)
    assert len(false_beats) <= 2, false_beats
    assert np.all(false_beats > PAUSE_LIMIT_S), false_beats


@pytest.mark.xfail(
    strict=True,
    reason="108's P waves measure about 0.47 of its beats' reference height: the ordinary "
    "threshold takes them from the first (docs/qrs.md, Limits)",
)
def test_tall_p_waves_of_a_standstill_are_a_known_limit(mitdb):
    false_beats = standstill_false_beats(mitdb, "108", 360.0)
    assert len(false_beats) <= 2, false_beats
    assert np.all(false_beats > PAUSE_LIMIT_S), false_beats


def synthetic_standstill(fs_hz: float, p_mv: float, seed: int) -> tuple[np.ndarray, int]:
    """20 s of synthetic sinus rhythm, then STANDSTILL_S of P waves alone at 75 bpm (Gaussian,
    ``p_mv`` high, 22 ms wide like the generator's) on a baseline with 15 uV of white noise."""
    strip = generate(20.0, fs=fs_hz, seed=seed)
    standstill = strip.signal_mv[-1] + p_waves_alone(STANDSTILL_S, fs_hz, p_mv, seed)
    return np.concatenate([strip.signal_mv, standstill]), len(strip.signal_mv)


@pytest.mark.parametrize("fs_hz", [128.0, 360.0, 1000.0])
@pytest.mark.parametrize("p_mv", [0.1, 0.2, 0.3])
def test_synthetic_p_waves_without_qrs_give_no_beat(fs_hz, p_mv):
    ecg, standstill_start = synthetic_standstill(fs_hz, p_mv, seed=11)
    beats = detect_qrs(ecg, fs_hz)
    # the first P wave comes when the next beat was due, and at 0.3 mV the threshold may take
    # it (as before the recovery rule); none may follow
    assert np.sum(beats > standstill_start + 0.7 * fs_hz) == 0


@pytest.mark.parametrize("fs_hz", [128.0, 257.3, 1000.0])
def test_the_standstill_guard_streams_the_offline_beats_through_saved_states(fs_hz):
    # P waves, then sinus rhythm again (the levels must come back for the new beats), through
    # chunks of prime sizes with the detector rebuilt from its saved state every third chunk
    ecg, _ = synthetic_standstill(fs_hz, 0.3, seed=12)
    ecg = np.concatenate(
        [
            ecg,
            ecg[-1]
            - generate(20.0, fs=fs_hz, seed=13).signal_mv[0]
            + generate(20.0, fs=fs_hz, seed=13).signal_mv,
        ]
    )
    offline = detect_qrs(ecg, fs_hz)
    assert np.sum(offline > len(ecg) - 14 * fs_hz) >= 14  # the sinus rhythm after is found
    sizes = [2, 3, 5, 7, 11, 13, 97, 1009]
    np.testing.assert_array_equal(streamed_beats(ecg, fs_hz, sizes), offline)


def test_a_state_saved_before_the_standstill_guard_still_loads():
    fs_hz = 250.0
    ecg, standstill_start = synthetic_standstill(fs_hz, 0.2, seed=14)
    detector = StreamingQrsDetector(fs_hz)
    first = detector.push(ecg[: standstill_start // 2])
    state = detector.state_dict()
    assert len(state["reference_levels"]) > 0
    old_state = {
        key: value
        for key, value in state.items()
        if key not in ("reference_levels", "reference_median")
    }
    restored = StreamingQrsDetector.from_state_dict(old_state)
    assert len(restored.state_dict()["reference_levels"]) == 0
    rest = np.concatenate([restored.push(ecg[standstill_start // 2 :]), restored.flush()])
    beats = np.concatenate([first, rest])
    # the guard holds again once 8 beats have set the reference: here the 10 s of sinus rhythm
    # after the cut are enough
    assert np.sum(beats > standstill_start + 0.3 * fs_hz) == 0
