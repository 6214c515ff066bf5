"""The analysis pipeline: one ECG lead in, beats, AAMI labels, rhythm episodes and a summary out.

    ecg (mV, any fs 100-2000 Hz)
      -> inference.qrs.detect_qrs          R peaks
      -> inference.beats (BeatClassifier)  AAMI class per beat (N, S, V, F, Q) + probabilities
      -> inference.rhythm.detect_episodes  AF, VT, VF, bradycardia, tachycardia, pauses
      -> summarize                         heart rate, counts, burden, episode totals

Uploads, the ``python -m inference.analyze`` command and the benchmarks all go through
``analyze_signal``, so they cannot disagree. Isolated beat rows (the seeds' one-beat-per-row CSV
layouts) have no rhythm context and go through ``classify_beat_rows`` instead.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from inference.aami import AAMI_CLASSES
from inference.beat_rows import classify_rows, row_saliency
from inference.beats import get_beat_classifier
from inference.qrs import detect_qrs
from inference.rhythm import EPISODE_KINDS, Episode, RhythmConfig, detect_episodes
from inference.signal import validate_fs, validate_signal

# Heart rate extremes are taken over this many beats, so that one ectopic beat with its short
# coupling interval does not set the "maximum heart rate" of a record.
HR_SMOOTHING_BEATS = 8


@dataclass
class RecordAnalysis:
    """Everything the pipeline found in one lead. Sample indices are at ``fs``."""

    fs: float
    n_samples: int
    r_peaks: np.ndarray
    labels: list[str]
    probabilities: np.ndarray
    episodes: list[Episode]
    summary: dict
    models: dict = field(default_factory=dict)
    # each beat's P-wave correlation with the dominant beat (inference.atrial; NaN where the
    # beat does not look like the dominant one): what the AF detector read
    p_wave: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def confidences(self) -> np.ndarray:
        """The probability of each beat's own label."""
        if len(self.probabilities) == 0:
            return np.empty(0)
        return self.probabilities.max(axis=1)

    def beats(self) -> list[dict]:
        """One JSON-ready dict per beat: sample, time, label, confidence, probabilities."""
        return [
            {
                "sample": int(sample),
                "time_s": round(float(sample) / self.fs, 4),
                "label": label,
                "confidence": round(float(probabilities.max()), 4),
                "probabilities": {
                    name: round(float(p), 4)
                    for name, p in zip(AAMI_CLASSES, probabilities, strict=True)
                },
            }
            for sample, label, probabilities in zip(
                self.r_peaks, self.labels, self.probabilities, strict=True
            )
        ]

    def to_dict(self) -> dict:
        return {
            "fs": self.fs,
            "n_samples": self.n_samples,
            "summary": self.summary,
            "episodes": [asdict(episode) for episode in self.episodes],
            "beats": self.beats(),
            "models": self.models,
        }


def analyze_signal(
    ecg_mv: np.ndarray, fs: float, config: RhythmConfig | None = None
) -> RecordAnalysis:
    """Detect, classify and summarize the beats and rhythms of one ECG lead.

    Parameters
    ----------
    ecg_mv : 1-D array in millivolts
    fs : sampling rate in Hz (100-2000; each stage resamples to what it needs)
    config : rhythm limits (bradycardia, tachycardia, pause); defaults when None
    """
    ecg = validate_signal(ecg_mv, name="ecg", min_samples=1)
    if ecg.ndim != 1:
        raise ValueError("analyze_signal takes one lead (a 1-D signal)")
    fs = validate_fs(fs)
    r_peaks, labels, probabilities, p_wave = detect_and_classify_beats(ecg, fs)
    classifier = get_beat_classifier()
    episodes = detect_episodes(ecg, fs, r_peaks, labels, config, p_wave=p_wave)
    return RecordAnalysis(
        fs=fs,
        n_samples=len(ecg),
        r_peaks=r_peaks,
        labels=labels,
        probabilities=probabilities,
        episodes=episodes,
        summary=summarize(r_peaks, labels, episodes, fs, len(ecg)),
        models={"qrs": "inference.qrs (Pan-Tompkins/Hamilton-Tompkins)", "beats": classifier.name},
        p_wave=p_wave,
    )


def detect_and_classify_beats(
    ecg_mv: np.ndarray, fs: float
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """The beats of one lead as :func:`analyze_signal` finds them, without the rhythm
    episodes: R peaks (samples at ``fs``), AAMI labels, probabilities (n, 5) and each beat's
    P-wave correlation (NaN where the beat does not look like the dominant one).

    ``ecg_mv``: 1-D, millivolts, at least 2 s (the QRS detector refuses less). The streaming
    analysis' backfill of a late chunk (``monitoring.backfill``) runs this on the chunk with
    its neighbours, so that its beats are labelled as an upload's are.
    """
    ecg = validate_signal(ecg_mv, name="ecg", min_samples=1)
    fs = validate_fs(fs)
    r_peaks = detect_qrs(ecg, fs)
    # (0, 5) when there are no beats; the P waves tell AF from other irregular rhythms
    probabilities, p_wave = get_beat_classifier().classify_beats(ecg, fs, r_peaks)
    labels = [AAMI_CLASSES[i] for i in probabilities.argmax(axis=1)]
    return r_peaks, labels, probabilities, p_wave


def summarize(
    r_peaks: np.ndarray,
    labels: list[str],
    episodes: list[Episode],
    fs: float,
    n_samples: int,
    max_rr_s: float | None = None,
) -> dict:
    """Heart rate, beat counts per AAMI class, burden and episode totals of one analysis
    (``max_rr_s``: as for :func:`heart_rate_bpm`)."""
    n_beats = len(r_peaks)
    counts = {name: 0 for name in AAMI_CLASSES}
    for label in labels:
        counts[label] += 1
    return {
        "duration_s": round(n_samples / fs, 3),
        "n_beats": n_beats,
        "heart_rate_bpm": heart_rate_bpm(r_peaks, fs, max_rr_s),
        "counts": counts,
        # fraction of all beats in each class: "V burden 12 %" is how clinicians read ectopy
        "burden": {
            name: round(count / n_beats, 4) if n_beats else 0.0 for name, count in counts.items()
        },
        "episodes": {
            kind: {
                "count": sum(1 for e in episodes if e.kind == kind),
                "seconds": round(sum(e.end_s - e.start_s for e in episodes if e.kind == kind), 2),
            }
            for kind in EPISODE_KINDS
        },
    }


def heart_rate_bpm(r_peaks: np.ndarray, fs: float, max_rr_s: float | None = None) -> dict:
    """Mean heart rate over the whole span, and the extremes of an 8-beat running mean.

    With ``max_rr_s`` (a streamed recording, whose gaps are missing signal, not a slow heart)
    the intervals longer than it are left out: the mean is over the others, and the extremes
    come from the runs of beats between them that are long enough for the running mean.
    ``None`` values when there are too few beats to say.
    """
    none = {"mean": None, "min": None, "max": None}
    if len(r_peaks) < 2:
        return none
    rr_s = np.diff(np.asarray(r_peaks, dtype=np.float64)) / fs
    if max_rr_s is None:
        kept_rr_s, runs, width = rr_s, [rr_s], min(HR_SMOOTHING_BEATS, len(rr_s))
    else:
        # each piece after the first starts with the long interval that split it off
        pieces = np.split(rr_s, np.flatnonzero(rr_s > max_rr_s))
        runs = [piece[piece <= max_rr_s] for piece in pieces]
        kept_rr_s, width = np.concatenate(runs), HR_SMOOTHING_BEATS
        runs = [run for run in runs if len(run) >= width]
        if not len(kept_rr_s):
            return none
    mean = 60.0 * len(kept_rr_s) / kept_rr_s.sum()
    if not runs:
        return {**none, "mean": round(float(mean), 1)}
    running_rr_s = np.concatenate(
        [np.convolve(run, np.ones(width) / width, mode="valid") for run in runs]
    )
    # The running mean counts the first and last intervals in fewer windows than the others,
    # so on a short strip the overall mean can fall just outside its extremes (64.6 against
    # 64.7-65.0 on a 10-s PTB-XL record): the range is widened to hold it.
    return {
        "mean": round(float(mean), 1),
        "min": round(float(min(mean, 60.0 / running_rr_s.max())), 1),
        "max": round(float(max(mean, 60.0 / running_rr_s.min())), 1),
    }


def classify_beat_rows(rows: np.ndarray, layout: str) -> tuple[list[str], np.ndarray]:
    """AAMI labels and probabilities of isolated beats, one per row, in a seed's ``layout``.

    See ``inference.beat_rows.ROW_LAYOUTS``: ``"kaggle187"`` or ``"window216"``.
    """
    probabilities = classify_rows(rows, layout)
    return [AAMI_CLASSES[i] for i in probabilities.argmax(axis=1)], probabilities


def beat_saliency(
    ecg_mv: np.ndarray, fs: float, r_peaks: np.ndarray, beat_index: int, first_sample: int = 0
) -> dict:
    """Which samples drove the classification of beat ``beat_index`` (gradient x input, 0..1).

    ``ecg_mv`` may be an excerpt starting at sample ``first_sample`` that holds the samples
    ``inference.beats.saliency_excerpt`` names; ``r_peaks`` are all the recording's beats
    (``BeatClassifier.saliency``)."""
    r_peaks = np.asarray(r_peaks, dtype=np.int64)
    if not 0 <= beat_index < len(r_peaks):
        raise ValueError(f"beat_index {beat_index} is out of range: there are {len(r_peaks)} beats")
    return get_beat_classifier().saliency(
        np.asarray(ecg_mv, dtype=np.float64), fs, r_peaks, beat_index, first_sample
    )


__all__ = [
    "RecordAnalysis",
    "analyze_signal",
    "beat_saliency",
    "classify_beat_rows",
    "detect_and_classify_beats",
    "heart_rate_bpm",
    "row_saliency",
    "summarize",
]
