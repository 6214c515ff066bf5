"""Rhythm episodes from beats and the signal: AF, VT, VF/VFL, bradycardia, tachycardia, pauses.

``detect_episodes(ecg_mv, fs, r_peaks, beat_labels)`` returns the episodes of one ECG lead;
``episodes_from_beats(times_s, labels, vf_probabilities, duration_s)`` the same from beats and
VF segment probabilities computed before (a stream's stored results):

``AF``
    Atrial fibrillation and flutter (MIT-BIH ``(AFIB`` and ``(AFL``: clinically one alarm, and
    flutter with variable conduction is as irregular as fibrillation). Found from RR
    irregularity, the cue of Tateno K, Glass L. Automatic detection of atrial fibrillation using
    the coefficient of variation and density histograms of RR and deltaRR intervals. Med Biol
    Eng Comput 39:664-671 (2001) and Dash S, et al. Automatic real time detection of atrial
    fibrillation. Ann Biomed Eng 37:1701-1709 (2009). Ectopic beats are the classic false
    alarm (Lake DE, Moorman JR. Accurate estimation of entropy in very short physiological time
    series: the problem of atrial fibrillation detection in implanted ventricular devices. Am J
    Physiol Heart Circ Physiol 300:H319-H325 (2011); Petrenas A, Marozas V, Sornmo L.
    Low-complexity detection of atrial fibrillation in continuous long-term monitoring.
    Comput Biol Med 65:184-191 (2015)), so: RR pairs of a premature beat (short, then long)
    are left out, and so are the intervals next to a beat labelled V that also comes early
    (a V label on a beat at the expected time is more often an aberrant beat in AF than a
    ventricular ectopic); each remaining RR interval is compared with the interval 1 and 2
    before it and keeps the smaller difference (bigeminy repeats with period 2, fibrillation
    never repeats; trigeminy is already gone with its premature pairs); the median of that
    difference, relative to the median RR, over ``af_window_beats`` intervals is the
    irregularity. An interval counts as irregular when that is above ``af_threshold``
    (``af_threshold_unlabelled`` when no beat labels are given) and the beats up to it have
    no consistent P wave (``inference.atrial.p_wave_presence`` below ``af_p_wave_present``:
    sinus arrhythmia, frequent ectopy and pauses keep their P waves, fibrillation has none).
    Irregular runs closer than ``af_merge_s`` are joined and those of at least ``af_min_s``
    are episodes.
``VT``
    At least ``vt_min_beats`` beats labelled V in a run at a mean rate of at least
    ``vt_min_bpm`` (intervals inside the run). A single F (fusion) or Q (unclassifiable) beat
    between two V beats no further apart than two intervals at ``vt_min_bpm`` continues the
    run without counting as one of its V beats; an N or S beat ends it. While such a beat is
    the newest one known, ``vt_run_may_go_on`` says whether the run may still go on (the
    streaming analysis' "ongoing"). Its mean and fastest rate: ``episode_rates_bpm``.
``VF``
    Ventricular fibrillation/flutter from the signal (``inference.vf``): consecutive 2-second
    segments the detector calls VF, lasting at least ``vf_min_s``. AF, bradycardia,
    tachycardia and pauses are clipped out of VF time, since beats found in VF are not beats;
    VT episodes are kept (fast VT and VF look alike to the signal detector).
``BRADY`` / ``TACHY``
    Heart rate (60 / median of the last ``rate_beats`` RR intervals, of those so far at the
    start) below ``brady_bpm`` or above ``tachy_bpm`` for at least ``rate_min_s``. Every
    limit holds at the limit, whatever the rounding of sample / fs (``TIME_SLACK_S``). The
    median finds the episode; its figures (mean, slowest or fastest rate) are read from its
    own intervals by ``episode_rates_bpm``, as the recording summary reads its own.
``PAUSE``
    No beat for at least ``pause_s``: between two beats, or from the last beat to the end of the
    signal (``details["open"] = "end"``) and from its start to the first (``"start"``). A
    stream's beats whose class is not known yet still end and begin pauses
    (``episodes_from_beats(unlabelled_s=...)``): an asystole is seen as it happens.

All times are seconds from the first sample. Research software, not a medical device.
"""

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from scipy.ndimage import median_filter

from inference import atrial
from inference.aami import AAMI_CLASSES
from inference.signal import validate_fs, validate_signal

EPISODE_KINDS = ("AF", "VT", "VF", "BRADY", "TACHY", "PAUSE")

# A premature beat shortens its interval and lengthens the next by this share of the median RR.
PREMATURE_SHARE = 0.10
# A beat labelled V is set aside only when its interval is this share shorter than the median.
V_EARLY_SHARE = 0.05
# Lags of the RR difference: 1 for the rhythm itself, 2 so that bigeminy scores near zero.
AF_LAGS = (1, 2)
MIN_AF_INTERVALS = 16
# A single beat of these classes between two V beats of a run, at the VT rate, does not end the
# run (docs/rhythm.md, "Ventricular tachycardia"): fusion (F) and unclassifiable (Q).
VT_BRIDGE_LABELS = ("F", "Q")
# Beat times are sample / fs in floating point, so a duration or interval that is exactly at a
# limit in samples can come out a hair short (at 250 Hz, beats at samples 251 and 1001 are
# 3.0 s apart but 1001/250 - 251/250 = 2.9999999999999996). Limits are compared with this
# slack, far below one sample at any rate (0.5 ms at 2000 Hz), so "at least 3 s" and
# "at least 100 bpm" hold at exactly 3 s and 100 bpm.
TIME_SLACK_S = 1e-6


@dataclass
class RhythmConfig:
    """Limits and minimum durations of the rhythm episodes (rates in bpm, times in s)."""

    brady_bpm: float = 50.0
    tachy_bpm: float = 120.0
    rate_beats: int = 8
    rate_min_s: float = 10.0
    pause_s: float = 3.0
    vt_min_beats: int = 3
    vt_min_bpm: float = 100.0
    # AF settings chosen without MIT-BIH DS2 (docs/rhythm.md): the best worst-of(Se, +P) of
    # AF duration over DS1, the paced records and vfdb's AF records 609 and 615, on our beats
    # with our classifier's labels and on the reference beats with theirs.
    # (2026-12-06, with the P-wave rule below and beat model 3.0's labels.)
    af_window_beats: int = 96
    af_threshold: float = 0.045
    # Without beat labels ventricular ectopy the premature-pair rule misses (couplets, runs)
    # stays in the statistic, so RR-only input needs a higher threshold (same data, same rule).
    af_threshold_unlabelled: float = 0.06
    af_min_s: float = 60.0
    af_merge_s: float = 30.0
    # An irregular stretch whose normal-looking beats keep a consistent P wave (median
    # correlation with the dominant beat's P wave at least this, inference.atrial) is not AF:
    # sinus arrhythmia, ectopy, pauses. Chosen on the same tuning set as the settings above.
    # None: no such rule (the rhythm alone decides).
    af_p_wave_present: float | None = atrial.P_WAVE_PRESENT_AT
    vf_min_s: float = 4.0
    vf_threshold: float | None = None  # None: the shipped model's own threshold
    detect_vf: bool = True

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "detect_vf":
                if not isinstance(value, bool):
                    raise ValueError(f"detect_vf must be true or false, got {value!r}")
                continue
            if item.name in ("vf_threshold", "af_p_wave_present") and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{item.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{item.name} must be a positive finite number, got {value}")
        for name in ("rate_beats", "vt_min_beats", "af_window_beats"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 2:
                raise ValueError(f"{name} must be a whole number >= 2, got {getattr(self, name)}")
        if self.brady_bpm >= self.tachy_bpm:
            raise ValueError(
                f"brady_bpm ({self.brady_bpm:g}) must be below tachy_bpm ({self.tachy_bpm:g})"
            )
        if self.vf_threshold is not None and not 0 < self.vf_threshold < 1:
            raise ValueError(f"vf_threshold must be between 0 and 1, got {self.vf_threshold}")


@dataclass
class Episode:
    """One rhythm episode: ``kind`` in ``EPISODE_KINDS``, times in seconds."""

    kind: str
    start_s: float
    end_s: float
    details: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict:
        return asdict(self)


def _validate_peaks(r_peaks: object, n_samples: int) -> np.ndarray:
    try:
        peaks = np.asarray(r_peaks)
    except ValueError:
        raise ValueError("r_peaks must be a 1-D array of sample indices") from None
    if peaks.ndim != 1:
        raise ValueError(f"r_peaks must be a 1-D array of sample indices, got shape {peaks.shape}")
    if len(peaks) == 0:
        return np.empty(0, dtype=np.int64)
    if peaks.dtype.kind not in "iu":
        if peaks.dtype.kind != "f" or not np.all(np.isfinite(peaks)):
            raise ValueError("r_peaks must hold whole sample indices")
        if np.any(peaks != np.round(peaks)):
            raise ValueError("r_peaks must hold whole sample indices, not fractions")
    peaks = peaks.astype(np.int64)
    if peaks[0] < 0 or peaks[-1] >= n_samples:
        raise ValueError(f"r_peaks must lie inside the signal (0 to {n_samples - 1})")
    if np.any(np.diff(peaks) <= 0):
        raise ValueError("r_peaks must be strictly increasing")
    return peaks


def _validate_labels(beat_labels: Sequence[str] | None, n_beats: int) -> np.ndarray | None:
    if beat_labels is None:
        return None
    if isinstance(beat_labels, str):
        raise ValueError("beat_labels must be a sequence of AAMI classes, one per R peak")
    labels = list(beat_labels)
    if len(labels) != n_beats:
        raise ValueError(f"beat_labels has {len(labels)} labels for {n_beats} R peaks")
    unknown = sorted({str(label) for label in labels} - set(AAMI_CLASSES))
    if unknown:
        raise ValueError(
            f"unknown beat labels {', '.join(unknown)}; use the AAMI classes "
            f"{', '.join(AAMI_CLASSES)}"
        )
    return np.array(labels, dtype=object)


def _at_least(duration_s: float | np.ndarray, limit_s: float) -> bool | np.ndarray:
    """``duration_s >= limit_s``, up to floating-point error in the beat times."""
    return duration_s >= limit_s - TIME_SLACK_S


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in ``mask``."""
    if len(mask) == 0:
        return []
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def af_irregularity(
    times_s: np.ndarray,
    beat_labels: np.ndarray | None = None,
    window_beats: int = 96,
    lags: tuple[int, ...] = AF_LAGS,
    v_early_share: float | None = V_EARLY_SHARE,
) -> np.ndarray:
    """Irregularity of each RR interval (see the module notes); 0 for a perfectly regular rhythm.

    Parameters
    ----------
    times_s : beat times in seconds, increasing
    beat_labels : AAMI class per beat, or None
    window_beats : RR intervals in the centred median window
    lags : each interval keeps the smallest difference to the intervals this many before it
    v_early_share : a V beat is set aside when its interval is this share shorter than the
        local median RR; None sets every V beat aside (the rule before 2026-11-25)

    Returns
    -------
    array of ``len(times_s) - 1`` values (dimensionless, share of the median RR).
    """
    rr_s = np.diff(times_s)
    if len(rr_s) == 0:
        return np.empty(0)
    size = window_beats + 1
    median_rr = median_filter(rr_s, size=size, mode="mirror")
    premature = (rr_s[:-1] < (1 - PREMATURE_SHARE) * median_rr[:-1]) & (
        rr_s[1:] > (1 + PREMATURE_SHARE) * median_rr[1:]
    )
    drop = np.zeros(len(rr_s), dtype=bool)
    drop[:-1] |= premature
    drop[1:] |= premature
    if beat_labels is not None:
        # The classifier calls many aberrant or oddly shaped beats of AF "V" (half the beats of
        # vfdb's AF record 609); their timing is as random as any other beat's, so only a V beat
        # that also comes early is treated as ectopic.
        early = np.ones(len(times_s), dtype=bool)
        if v_early_share is not None:
            early[0] = False
            early[1:] = rr_s < (1 - v_early_share) * median_rr
        ventricular = (beat_labels == "V") & early
        drop |= ventricular[1:] | ventricular[:-1]
    kept = np.flatnonzero(~drop)
    max_lag = max(lags)
    if len(kept) <= max_lag + 2:
        return np.zeros(len(rr_s))
    rr = rr_s[kept]
    difference = np.full(len(rr), np.inf)
    for lag in lags:
        difference[lag:] = np.minimum(difference[lag:], np.abs(rr[lag:] - rr[:-lag]))
    difference[:max_lag] = difference[max_lag]
    relative = difference / median_filter(rr, size=size, mode="mirror")
    irregularity = median_filter(relative, size=size, mode="mirror")
    return np.interp(np.arange(len(rr_s)), kept, irregularity)


def _af_episodes(
    times_s: np.ndarray,
    labels: np.ndarray | None,
    cfg: RhythmConfig,
    p_wave: np.ndarray | None = None,
) -> list:
    if len(times_s) <= MIN_AF_INTERVALS:
        return []
    threshold = cfg.af_threshold if labels is not None else cfg.af_threshold_unlabelled
    irregular = af_irregularity(times_s, labels, int(cfg.af_window_beats)) > threshold
    if p_wave is not None and cfg.af_p_wave_present is not None:
        is_ventricular = labels == "V" if labels is not None else np.zeros(len(times_s), bool)
        presence = atrial.p_wave_presence(p_wave, is_ventricular)
        # interval i ends at beat i + 1: the P waves seen up to that beat
        irregular &= ~(presence[1:] >= cfg.af_p_wave_present)
    return af_episodes_from_mask(times_s, irregular, cfg.af_merge_s, cfg.af_min_s)


def af_episodes_from_mask(
    times_s: np.ndarray, irregular: np.ndarray, merge_s: float, min_s: float
) -> list[Episode]:
    """AF episodes from a per-interval irregular mask: runs closer than ``merge_s`` seconds are
    joined, and those at least ``min_s`` seconds long are kept."""
    spans = [(times_s[a], times_s[b + 1]) for a, b in _runs(irregular)]
    merged: list[list[float]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] < merge_s:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    episodes = []
    for start, end in merged:
        if _at_least(end - start, min_s):
            inside = (times_s >= start) & (times_s <= end)
            rr = np.diff(times_s[inside])
            episodes.append(
                Episode(
                    "AF",
                    float(start),
                    float(end),
                    {"n_beats": int(inside.sum()), "mean_hr_bpm": round(float(60 / rr.mean()), 1)},
                )
            )
    return episodes


def vt_bridge_gap_s(config: RhythmConfig) -> float:
    """The longest time between two V beats of a run that a single F or Q beat between them
    can bridge: two intervals at ``vt_min_bpm`` (1.2 s at 100 bpm)."""
    return 2 * 60.0 / config.vt_min_bpm


def vt_run_may_go_on(
    times_s: np.ndarray,
    labels: Sequence[str],
    run_end_s: float,
    known_until_s: float,
    config: RhythmConfig | None = None,
) -> bool:
    """Whether a VT run whose last V beat is at ``run_end_s`` may still go on through a
    bridging beat, for a caller that knows the beats only up to ``known_until_s`` (the
    streaming analysis): the beats after that V beat are one F or Q beat, and a V beat coming
    after ``known_until_s`` would still be within :func:`vt_bridge_gap_s` of it.

    False when no beat came after the V beat (the run simply ends there so far), when the
    beats after it are an N or S beat, two F/Q beats or anything else the run cannot bridge, and
    once the bridge gap has passed without a V beat: :func:`episodes_from_beats` would end the
    run at that V beat whatever comes next.
    """
    cfg = config if config is not None else RhythmConfig()
    times_s = np.asarray(times_s, dtype=np.float64)
    if times_s.ndim != 1 or len(labels) != len(times_s):
        raise ValueError(f"labels has {len(labels)} labels for {times_s.size} beat times")
    if not (math.isfinite(run_end_s) and math.isfinite(known_until_s)):
        raise ValueError("run_end_s and known_until_s must be finite seconds")
    later = np.flatnonzero(times_s > run_end_s + TIME_SLACK_S)
    return (
        len(later) == 1
        and labels[int(later[0])] in VT_BRIDGE_LABELS
        # the next beat, at known_until_s or later, must be within the gap of the last V
        and known_until_s - run_end_s <= vt_bridge_gap_s(cfg) + TIME_SLACK_S
    )


def _vt_runs(times_s: np.ndarray, labels: np.ndarray, cfg: RhythmConfig) -> list[tuple[int, int]]:
    """(first, last) beat of each run of V beats, a single F or Q beat between two V beats
    carried over when the two V beats around it are no further apart than two intervals at
    ``vt_min_bpm``: a fusion beat is partly ventricular (fusion beats are a sign of VT, not of
    its end) and an unclassifiable beat is "we do not know", so neither ends the run. An N or S
    beat, two F/Q beats in a row, or an F/Q beat after a slower gap does. A run starts and
    ends with a V beat."""
    runs: list[list[int]] = []
    for first, last in _runs(labels == "V"):
        if runs:
            previous_last = runs[-1][1]
            bridge = previous_last + 1
            if (
                first == bridge + 1
                and labels[bridge] in VT_BRIDGE_LABELS
                and times_s[first] - times_s[previous_last] <= vt_bridge_gap_s(cfg) + TIME_SLACK_S
            ):
                runs[-1][1] = last
                continue
        runs.append([first, last])
    return [(first, last) for first, last in runs]


def episode_rates_bpm(rr_s: np.ndarray, window: int) -> tuple[float, float, float]:
    """(slowest, mean, fastest) heart rate in bpm of an episode's RR intervals, in that order.

    The mean is 60 over the mean interval: the beats per minute over the episode. The
    extremes are those of the running mean of ``window`` consecutive intervals (of all of
    them when there are fewer), as the recording summary reads its own
    (``inference.analysis.heart_rate_bpm``, 8 intervals), and for the same reason: one short
    interval (an ectopic beat's coupling interval, a beat found twice) or one long one (the
    pause after it) is no heart rate. A running mean counts the first and last intervals in
    fewer windows than the others, so the episode's mean can fall just outside its extremes;
    they are widened to hold it (the whole episode is a stretch of at least ``window``
    intervals too), so slowest <= mean <= fastest always.
    """
    rr_s = np.asarray(rr_s, dtype=np.float64)
    if rr_s.ndim != 1 or len(rr_s) == 0:
        raise ValueError("an episode's rates need a 1-D array of at least one RR interval")
    width = min(int(window), len(rr_s))
    running_rr_s = np.convolve(rr_s, np.ones(width) / width, mode="valid")
    mean_rr_s = float(rr_s.mean())
    slowest_rr_s = max(mean_rr_s, float(running_rr_s.max()))
    fastest_rr_s = min(mean_rr_s, float(running_rr_s.min()))
    return 60.0 / slowest_rr_s, 60.0 / mean_rr_s, 60.0 / fastest_rr_s


def _vt_episodes(times_s: np.ndarray, labels: np.ndarray | None, cfg: RhythmConfig) -> list:
    if labels is None:
        return []
    episodes = []
    for first, last in _vt_runs(times_s, labels, cfg):
        # the F/Q beats carried over do not count towards vt_min_beats
        n_v_beats = int(np.count_nonzero(labels[first : last + 1] == "V"))
        if n_v_beats < cfg.vt_min_beats:
            continue
        rr = np.diff(times_s[first : last + 1])
        # at least vt_min_bpm: a mean RR no longer than 60 / vt_min_bpm seconds
        if rr.mean() > 60.0 / cfg.vt_min_bpm + TIME_SLACK_S:
            continue
        # The fastest rate is a running mean over rate_beats intervals, as the recording's
        # (a run shorter than that has one rate, its mean), not the shortest interval: two R
        # peaks 81 ms apart in ventricular flutter gave one VT "744.8 bpm" beside a recording
        # maximum of 238.
        _, mean_hr, max_hr = episode_rates_bpm(rr, int(cfg.rate_beats))
        episodes.append(
            Episode(
                "VT",
                float(times_s[first]),
                float(times_s[last]),
                {
                    "n_beats": int(last - first + 1),
                    "n_v_beats": n_v_beats,
                    "mean_hr_bpm": round(mean_hr, 1),
                    "max_hr_bpm": round(max_hr, 1),
                },
            )
        )
    return episodes


def _rate_episodes(times_s: np.ndarray, cfg: RhythmConfig) -> list:
    rr = np.diff(times_s)
    n_rate = int(cfg.rate_beats)
    if len(rr) == 0:
        return []
    # Trailing median of the last n_rate intervals, as a bedside monitor averages: one ectopic
    # beat or missed detection does not make an episode.
    median_rr = np.empty(len(rr))
    if len(rr) >= n_rate:
        windows = np.lib.stride_tricks.sliding_window_view(rr, n_rate)
        median_rr[n_rate - 1 :] = np.median(windows, axis=1)
    # Before n_rate intervals have come, the median of those there are: a rhythm that runs from
    # the start of the signal is an episode from there (the 10-s minimum still keeps one odd
    # interval from making one). Leaving them out made a 12-s strip at 40 bpm no bradycardia.
    for index in range(min(n_rate - 1, len(rr))):
        median_rr[index] = np.median(rr[: index + 1])
    # below brady_bpm: a median RR longer than 60 / brady_bpm; above tachy_bpm: shorter than
    # 60 / tachy_bpm (a rate exactly at a limit is no episode, whatever the rounding)
    slow = median_rr > 60.0 / cfg.brady_bpm + TIME_SLACK_S
    fast = median_rr < 60.0 / cfg.tachy_bpm - TIME_SLACK_S
    episodes = []
    for kind, mask in (("BRADY", slow), ("TACHY", fast)):
        for first, last in _runs(mask):
            start, end = times_s[first], times_s[last + 1]
            if not _at_least(end - start, cfg.rate_min_s):
                continue
            # The figures come from the episode's own intervals, all by one rule
            # (episode_rates_bpm): the slowest (fastest) came from the trailing median, which
            # also reads intervals before the episode and leaves out its long and short
            # ones, and the mean from the intervals, so a bradycardia with pauses in it read
            # "mean 46.1, min 49.4".
            slowest, mean, fastest = episode_rates_bpm(rr[first : last + 1], n_rate)
            extreme = {"BRADY": ("min_hr_bpm", slowest), "TACHY": ("max_hr_bpm", fastest)}
            key, value = extreme[kind]
            episodes.append(
                Episode(
                    kind,
                    float(start),
                    float(end),
                    {
                        "n_beats": int(last - first + 2),
                        "mean_hr_bpm": round(mean, 1),
                        key: round(value, 1),
                    },
                )
            )
    return episodes


def _pause_episodes(times_s: np.ndarray, duration_s: float, cfg: RhythmConfig) -> list:
    bounds = np.concatenate([[0.0], times_s, [duration_s]])
    episodes = []
    for index in np.flatnonzero(_at_least(np.diff(bounds), cfg.pause_s)):
        start, end = float(bounds[index]), float(bounds[index + 1])
        details = {"duration_s": round(end - start, 3)}
        if index == 0:
            details["open"] = "start"
        if index == len(bounds) - 2:
            details["open"] = "end" if index > 0 else "both"
        episodes.append(Episode("PAUSE", start, end, details))
    return episodes


def vf_episodes(ecg_mv: np.ndarray, fs: float, cfg: RhythmConfig) -> list[Episode]:
    """VF/VFL episodes: runs of 2-second segments the signal detector calls VF."""
    from inference.vf import shipped_model, vf_probability

    return vf_episodes_from_probability(vf_probability(ecg_mv, fs, shipped_model()), cfg)


def vf_episodes_from_probability(probability: np.ndarray, cfg: RhythmConfig) -> list[Episode]:
    """VF/VFL episodes from the VF probability of each consecutive 2-second segment
    (``inference.vf.vf_probability``), at the config's threshold or the shipped model's."""
    from inference.vf import SEGMENT_S, shipped_model

    threshold = cfg.vf_threshold if cfg.vf_threshold is not None else shipped_model().threshold
    episodes = []
    for first, last in _runs(probability >= threshold):
        start, end = first * SEGMENT_S, (last + 1) * SEGMENT_S
        if _at_least(end - start, cfg.vf_min_s):
            share = float(probability[first : last + 1].mean())
            episodes.append(Episode("VF", start, end, {"mean_probability": round(share, 3)}))
    return episodes


def _outside(episode: Episode, blocked: list[Episode], min_s: float = 0.0) -> list[Episode]:
    """The parts of ``episode`` outside every ``blocked`` interval, at least ``min_s`` long."""
    pieces = [(episode.start_s, episode.end_s)]
    for other in blocked:
        cut = []
        for start, end in pieces:
            if other.end_s <= start or other.start_s >= end:
                cut.append((start, end))
                continue
            if other.start_s > start:
                cut.append((start, other.start_s))
            if other.end_s < end:
                cut.append((other.end_s, end))
        pieces = cut
    return [
        _piece(episode, start, end)
        for start, end in pieces
        if _at_least(end - start, min_s) and end > start
    ]


def _piece(episode: Episode, start_s: float, end_s: float) -> Episode:
    """The part ``start_s``-``end_s`` of ``episode``. A pause's details describe the part: its
    duration, and open at the start or the end only where the part still reaches it (a pause
    open at the end, cut by VF, was otherwise reported twice as 28 s and open at the end)."""
    details = dict(episode.details)
    if episode.kind == "PAUSE":
        details["duration_s"] = round(end_s - start_s, 3)
        was_open = details.pop("open", None)
        open_start = was_open in ("start", "both") and start_s == episode.start_s
        open_end = was_open in ("end", "both") and end_s == episode.end_s
        if open_start or open_end:
            details["open"] = (
                "both" if open_start and open_end else "start" if open_start else "end"
            )
    return Episode(episode.kind, start_s, end_s, details)


def detect_episodes(
    ecg_mv: np.ndarray,
    fs: float,
    r_peaks: np.ndarray,
    beat_labels: Sequence[str] | None = None,
    config: RhythmConfig | None = None,
    p_wave: np.ndarray | None = None,
) -> list[Episode]:
    """Rhythm episodes of one ECG lead, sorted by start.

    Parameters
    ----------
    ecg_mv : 1-D array, millivolts (used for VF/VFL; beats cannot be trusted there)
    fs : sampling rate in Hz
    r_peaks : sample indices of the beats, strictly increasing
    beat_labels : AAMI class per beat (N, S, V, F, Q), e.g. from the beat classifier; without
        them there are no VT episodes and AF cannot set ventricular beats aside
    config : limits and durations; ``RhythmConfig()`` when None
    p_wave : each beat's P-wave correlation (``inference.beats.BeatClassifier.classify_beats``
        gives it with the labels); computed from the signal when None

    Returns
    -------
    list of ``Episode`` sorted by ``start_s``; ``details`` is JSON-serialisable.

    Raises
    ------
    ValueError
        For a signal that is not a finite 1-D array, a bad ``fs``, R peaks that are not
        increasing sample indices inside the signal, or labels that are not AAMI classes or do
        not match the R peaks one to one.
    """
    ecg = validate_signal(ecg_mv, name="ecg", min_samples=1)
    if ecg.ndim != 1:
        raise ValueError("detect_episodes takes one lead (a 1-D signal)")
    fs = validate_fs(fs)
    cfg = config if config is not None else RhythmConfig()
    if not isinstance(cfg, RhythmConfig):
        raise ValueError(f"config must be a RhythmConfig, got {type(cfg).__name__}")
    peaks = _validate_peaks(r_peaks, len(ecg))
    labels = _validate_labels(beat_labels, len(peaks))
    if p_wave is None and len(peaks) > 0:
        # imported here, as inference.vf below: inference.beats imports torch, and the web
        # server reads RhythmConfig (monitoring.alarms) at startup, long before any analysis
        from inference.beats import MAX_FS_HZ, MIN_FS_HZ, beat_features, beat_p_waves

        if MIN_FS_HZ <= fs <= MAX_FS_HZ:
            p_wave = beat_p_waves(*beat_features(ecg, fs, peaks))
    vf_probabilities = None
    if cfg.detect_vf:
        from inference.vf import shipped_model, vf_probability

        vf_probabilities = vf_probability(ecg, fs, shipped_model())
    return episodes_from_beats(peaks / fs, labels, vf_probabilities, len(ecg) / fs, cfg, p_wave)


def episodes_from_beats(
    times_s: np.ndarray,
    labels: Sequence[str] | None,
    vf_probabilities: np.ndarray | None,
    duration_s: float,
    config: RhythmConfig | None = None,
    p_wave: Sequence[float | None] | np.ndarray | None = None,
    unlabelled_s: Sequence[float] | np.ndarray | None = None,
) -> list[Episode]:
    """Rhythm episodes from beats and VF segment probabilities already computed, sorted by start.

    What ``detect_episodes`` does once the beats are known and the VF detector has run, for
    callers that stored both (the streaming analysis keeps beats and the VF probability of
    each 2-second segment, not the signal).

    Parameters
    ----------
    times_s : beat times in seconds from the first sample, strictly increasing
    labels : AAMI class per beat, or None (no VT episodes then)
    vf_probabilities : VF/VFL probability of each consecutive 2-second segment from the first
        sample (``inference.vf.vf_probability``), or None to leave VF out
    duration_s : length of the signal in seconds (an open pause runs to its end)
    config : limits and durations; ``RhythmConfig()`` when None
    p_wave : each beat's P-wave correlation (``inference.atrial``; None or NaN where
        unknown), or None: then an irregular rhythm is AF whatever its P waves
    unlabelled_s : times of beats after the last of ``times_s`` whose position is known but
        not their class yet (a stream's beats waiting for their label:
        ``inference.streaming.StreamingAnalyzer.pending_beat_samples``), or None. They count
        for pauses only, which need no more than where the beats are: an asystole after them
        is a pause up to ``duration_s`` even though the last beat's class is not known. The
        other episodes read ``times_s`` only.

    Raises
    ------
    ValueError
        For times that are not finite and increasing (``unlabelled_s`` after ``times_s``),
        labels that are not AAMI classes or not one per beat, probabilities that are not a
        1-D array in [0, 1], or a duration shorter than the last beat time.
    """
    cfg = config if config is not None else RhythmConfig()
    if not isinstance(cfg, RhythmConfig):
        raise ValueError(f"config must be a RhythmConfig, got {type(cfg).__name__}")
    times_s = np.asarray(times_s, dtype=np.float64)
    if times_s.ndim != 1 or not np.all(np.isfinite(times_s)) or np.any(np.diff(times_s) <= 0):
        raise ValueError("times_s must be a 1-D array of finite, strictly increasing seconds")
    labels = _validate_labels(labels, len(times_s))
    if p_wave is not None:
        p_wave = np.array([np.nan if value is None else value for value in p_wave], float)
        if p_wave.shape != times_s.shape:
            raise ValueError(f"p_wave must have one value per beat ({len(times_s)})")
    beat_times_s = times_s
    if unlabelled_s is not None:
        unlabelled = np.asarray(unlabelled_s, dtype=np.float64)
        beat_times_s = np.concatenate([times_s, unlabelled.ravel()])
        if (
            unlabelled.ndim != 1
            or not np.all(np.isfinite(beat_times_s))
            or np.any(np.diff(beat_times_s) <= 0)
        ):
            raise ValueError(
                "unlabelled_s must be a 1-D array of finite, strictly increasing seconds after "
                "times_s"
            )
    duration_s = float(duration_s)
    if not math.isfinite(duration_s) or (len(beat_times_s) and duration_s < beat_times_s[-1]):
        raise ValueError(f"duration_s ({duration_s:g}) must be finite and cover every beat")
    vf: list[Episode] = []
    if vf_probabilities is not None:
        probability = np.asarray(vf_probabilities, dtype=np.float64)
        if probability.ndim != 1 or np.any(~(probability >= 0) | ~(probability <= 1)):
            raise ValueError("vf_probabilities must be a 1-D array of probabilities in [0, 1]")
        vf = vf_episodes_from_probability(probability, cfg)
    beat_episodes = (
        _af_episodes(times_s, labels, cfg, p_wave)
        + _vt_episodes(times_s, labels, cfg)
        + _rate_episodes(times_s, cfg)
        + _pause_episodes(beat_times_s, duration_s, cfg)
    )
    minimum = {
        "AF": cfg.af_min_s,
        "BRADY": cfg.rate_min_s,
        "TACHY": cfg.rate_min_s,
        "PAUSE": cfg.pause_s,
    }
    episodes = list(vf)
    for episode in beat_episodes:
        if not vf or episode.kind == "VT":
            # VT stays even where the VF detector fires too: fast VT and VF/VFL look alike on
            # 2-s segments (docs/rhythm.md), and V-beat runs are the better evidence for VT.
            episodes.append(episode)
        else:
            episodes.extend(_outside(episode, vf, minimum.get(episode.kind, 0.0)))
    return sorted(episodes, key=lambda episode: (episode.start_s, episode.end_s, episode.kind))
