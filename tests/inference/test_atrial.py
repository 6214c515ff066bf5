"""Atrial activity: P-wave consistency, causal RR irregularity and the AF context."""

import numpy as np
import pytest

from inference import atrial
from inference.beats import BEAT_FS_HZ, WINDOW_BEFORE_S, WINDOW_SAMPLES, beat_features
from inference.beats import beat_p_waves as beat_p_waves_of
from inference.datasets.mitdb import load_record
from inference.rhythm import RhythmConfig, episodes_from_beats

GRID_S = np.arange(WINDOW_SAMPLES) / BEAT_FS_HZ - WINDOW_BEFORE_S  # time from the R peak


def beat(p_wave_mv: float, noise: np.ndarray | None = None) -> np.ndarray:
    """A stylised window: a Gaussian P wave 160 ms before a QRS, optional noise."""
    qrs = np.exp(-0.5 * (GRID_S / 0.012) ** 2)
    p = p_wave_mv * np.exp(-0.5 * ((GRID_S + 0.16) / 0.025) ** 2)
    return qrs + p + (0 if noise is None else noise)


def p_waves(windows, templates, qrs_correlation):
    return atrial.p_wave_correlation(
        windows,
        templates,
        qrs_correlation,
        window_fs_hz=BEAT_FS_HZ,
        window_before_s=WINDOW_BEFORE_S,
    )


def test_it_finds_a_consistent_p_wave_and_none_in_a_fibrillating_baseline():
    rng = np.random.default_rng(0)
    dominant = beat(0.15)
    with_p = np.stack([beat(0.15, rng.normal(0, 0.01, WINDOW_SAMPLES)) for _ in range(20)])
    fibrillating = np.stack([beat(0.0, rng.normal(0, 0.05, WINDOW_SAMPLES)) for _ in range(20)])
    templates = np.repeat(dominant[np.newaxis], 20, axis=0)
    ones = np.ones(20)
    assert p_waves(with_p, templates, ones).min() > 0.9
    assert np.abs(np.median(p_waves(fibrillating, templates, ones))) < 0.3
    # a beat whose QRS is not the dominant one's (ventricular) has no P wave to compare
    assert np.isnan(p_waves(with_p, templates, np.full(20, 0.5))).all()


def test_a_drifting_baseline_is_not_a_p_wave():
    ramp = np.linspace(-0.5, 0.5, WINDOW_SAMPLES)
    windows = np.stack([beat(0.0) + ramp, beat(0.0) - ramp])
    templates = np.stack([beat(0.0) + ramp] * 2)
    # the trend is removed from both stretches, so what is left (nothing) does not correlate
    assert np.abs(p_waves(windows, templates, np.ones(2))).max() < 0.2


def test_running_nanmedian_is_the_median_of_each_trailing_window():
    rng = np.random.default_rng(1)
    values = rng.normal(size=200)
    values[rng.random(200) < 0.3] = np.nan
    values[:5] = np.nan  # all-NaN windows at the start give NaN
    got = atrial.running_nanmedian(values, 7)
    for i in range(len(values)):
        window = values[max(0, i - 6) : i + 1]
        finite = window[np.isfinite(window)]
        if len(finite):
            assert got[i] == pytest.approx(np.median(finite))
        else:
            assert np.isnan(got[i])
    assert len(atrial.running_nanmedian(np.empty(0), 7)) == 0


def test_rr_irregularity_is_low_for_regular_rhythm_and_bigeminy_and_high_for_random_rr():
    regular = np.cumsum(np.full(300, 0.8))
    bigeminy = np.cumsum(np.tile([0.5, 1.1], 150))
    rng = np.random.default_rng(2)
    fibrillation = np.cumsum(rng.uniform(0.4, 1.2, 300))
    assert np.nanmax(atrial.rr_irregularity(regular)[100:]) == 0
    assert np.nanmax(atrial.rr_irregularity(bigeminy)[100:]) < atrial.IRREGULAR_ABOVE
    assert np.nanmin(atrial.rr_irregularity(fibrillation)[100:]) > 2 * atrial.IRREGULAR_ABOVE
    assert np.isnan(atrial.rr_irregularity(regular)[0])


def test_the_af_context_looks_only_backwards():
    rng = np.random.default_rng(3)
    times = np.cumsum(np.concatenate([np.full(200, 0.8), rng.uniform(0.4, 1.2, 200)]))
    p_wave = np.concatenate([np.full(200, 0.95), rng.uniform(-0.2, 0.2, 200)])
    ventricular = np.zeros(400, dtype=bool)
    whole = atrial.af_context(times, p_wave, ventricular)
    assert not whole[:200].any() and whole[-100:].all()
    # each beat's value is the same when the beats after it are not there yet
    for end in (150, 230, 260, 330):
        np.testing.assert_array_equal(
            atrial.af_context(times[:end], p_wave[:end], ventricular[:end]), whole[:end]
        )
    # ... and when only HISTORY_BEATS beats before it are kept (what a stream keeps)
    start = 300 - atrial.HISTORY_BEATS
    np.testing.assert_array_equal(
        atrial.af_context(times[start:], p_wave[start:], ventricular[start:])[-100:],
        whole[-100:],
    )


def test_consistent_p_waves_overrule_an_irregular_rhythm():
    rng = np.random.default_rng(4)
    times = np.cumsum(rng.uniform(0.4, 1.2, 400))  # 5 minutes of irregular RR
    cfg = RhythmConfig(detect_vf=False)
    kinds = {e.kind for e in episodes_from_beats(times, None, None, times[-1] + 1, cfg)}
    assert "AF" in kinds
    fibrillating = rng.uniform(-0.2, 0.2, 400)
    with_p_waves = np.full(400, 0.95)
    no_af = episodes_from_beats(times, None, None, times[-1] + 1, cfg, p_wave=with_p_waves)
    af = episodes_from_beats(times, None, None, times[-1] + 1, cfg, p_wave=fibrillating)
    assert "AF" not in {e.kind for e in no_af}
    assert "AF" in {e.kind for e in af}
    # unknown P waves (None or NaN) leave the rhythm to decide
    unknown = episodes_from_beats(times, None, None, times[-1] + 1, cfg, p_wave=[None] * 400)
    assert "AF" in {e.kind for e in unknown}


def test_fold_moves_s_to_n_only_in_af_context():
    probabilities = np.array(
        [[0.2, 0.7, 0.1, 0, 0], [0.2, 0.7, 0.1, 0, 0], [0.1, 0.2, 0.7, 0, 0]], dtype=float
    )
    folded = atrial.fold_s_into_n(probabilities, np.array([False, True, True]), 0, 1)
    np.testing.assert_allclose(folded[0], probabilities[0])
    np.testing.assert_allclose(folded[1], [0.9, 0, 0.1, 0, 0])
    np.testing.assert_allclose(folded[2], [0.3, 0, 0.7, 0, 0])  # V stays V
    np.testing.assert_allclose(folded.sum(axis=1), 1)
    assert probabilities[1, 1] == 0.7  # the input is not changed


def test_on_mitdb_201_af_has_no_p_waves_and_sinus_rhythm_has(mitdb):
    """Record 201 (DS1) holds atrial fibrillation and sinus rhythm."""
    record = load_record(mitdb, "201")
    peaks = record.beat_samples
    p_wave = beat_p_waves_of(*beat_features(record.signal_mv, record.fs, peaks))
    presence = atrial.p_wave_presence(p_wave, np.array(record.beat_classes) == "V")
    in_af = np.zeros(len(peaks), dtype=bool)
    normal = np.zeros(len(peaks), dtype=bool)
    for start, end, label in record.rhythms:
        inside = (peaks >= start) & (peaks < end)
        in_af |= inside & (label in ("(AFIB", "(AFL"))
        normal |= inside & (label == "(N")
    assert np.nanmedian(presence[in_af]) < 0.3
    assert np.nanmedian(presence[normal]) > atrial.P_WAVE_PRESENT_AT
