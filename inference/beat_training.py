"""Train the AAMI beat classifier on MIT-BIH DS1, choose it by cross-validation over DS1
patients, and report it once on DS2.

    python -m inference.beat_training --cv 5 [--model cnn|hgb|logreg] --cv-json OUT   # tuning
    python -m inference.beat_training --epochs N --cv-results CV.json ...           # final

Inter-patient discipline (de Chazal et al. 2004): every choice (recipe, network or baseline,
number of epochs) is made by leave-patients-out cross-validation over the 22 DS1 patients
(``--cv``: each fold's patients are predicted by a model trained on the other folds; the
held-out predictions are pooled and scored per class). The final run trains on all of DS1 for
the chosen number of epochs, reads DS2 once with the evaluation command's code, and writes
``beat-cnn-mitdb.pt`` and ``.json`` and ``beat-cnn-mitdb.md`` with the cross-validation table
and curve and the DS2 confusion matrices as PNG into ``--out-dir DIR`` (default: a new
``runs/beat-cnn-mitdb-<UTC time>/``); only ``--replace-shipped`` writes over the shipped
``inference/weights/beat-cnn-mitdb.*`` and ``docs/models/beat-cnn-mitdb*``. The card's
hand-written notes (what was learned after the DS2 read) come from
``docs/models/beat-cnn-mitdb-notes.md``, which the command keeps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import wfdb
from torch import nn
from tqdm import tqdm

from inference.aami import DS1, DS2
from inference.atrial import QRS_MATCH_MIN
from inference.beats import (
    BANDPASS_HZ,
    BEAT_CLASSES,
    BEAT_FS_HZ,
    MAX_RATIO,
    MIN_AMPLITUDE_MV,
    PAUSE_RATIO,
    RR_FEATURES,
    TEMPLATE_UPDATE_BEATS,
    WINDOW_AFTER_S,
    WINDOW_BEFORE_S,
    WINDOW_SAMPLES,
    BeatClassifier,
    BeatEnsemble,
    BeatNet,
    beat_features,
    beat_p_waves,
    beat_windows,
    dominant_beats,
    fold_s_in_af,
    rhythm_features,
)
from inference.datasets.mitdb import load_record
from inference.evaluation.beats import (
    beat_metrics,
    confusion_table,
    evaluate_records,
    metrics_from_confusion,
    metrics_table,
    plot_confusion,
    rounded,
)
from inference.evaluation.common import json_text, mitdb_folder, writable_output
from inference.models import count_parameters
from inference.registry import add_output_options, make_run_dirs, run_dirs
from inference.train import DOCS_DIR, git_commit, training_environment

NAME = "beat-cnn-mitdb"
# Hand-written notes on the card (what was learned after the DS2 read, which this command cannot
# know), copied into the card before its Limits paragraph so that writing the card keeps them.
NOTES_PATH = DOCS_DIR / f"{NAME}-notes.md"
FEATURE_VERSION = "rr-mean-p-wave"  # bump when beat_features changes, to invalidate caches

PUBLISHED = (
    # (reference, S Se, S +P, S F1, V Se, V +P, V F1, accuracy), percent / fraction as printed
    ("de Chazal et al. 2004", 75.9, 38.5, None, 77.7, 81.9, None, None),
    ("Mar et al. 2011", 83.0, 33.0, None, 86.0, 75.0, None, None),
    ("Niu et al. 2020", None, None, 0.77, None, None, 0.90, 96.4),
    ("Zhang et al. 2021", 78.8, 90.8, None, 92.5, 94.3, None, None),
)
# The model this command trains: its version is MODEL_VERSION.<seed>.
MODEL_VERSION = "4.0"
# The previous beat models, as their cards reported them on DS2 (reference beats), kept for
# the history: 1.0.0 (code 8690f85, early stopping on 5 DS1 patients; DS2 read twice for it),
# 2.0.0 (code 1b24bbb, median RR without pauses, no AF rule; DS2 read once) and 3.0.0 (code
# fcfa617, mean RR, S folded into N in AF context; DS2 read once).
PREVIOUS = (
    ("previous model 1.0.0, reference beats", 16.2, 22.8, 0.19, 91.6, 73.3, 0.81, 91.7),
    ("previous model 2.0.0, reference beats", 20.6, 18.8, 0.20, 92.3, 84.6, 0.88, 92.4),
    ("previous model 3.0.0, reference beats", 13.6, 30.7, 0.189, 92.9, 86.8, 0.897, 94.2),
)
# each rhythm feature's column in the rows the network reads
RR_COLUMN = {name: index for index, name in enumerate(RR_FEATURES)}
PREVIOUS_KEYS = ("model", "s_se", "s_ppv", "s_f1", "v_se", "v_ppv", "v_f1", "accuracy")


# --- Data ---------------------------------------------------------------------------------


def record_features(
    folder: Path, name: str, cache_dir: Path | None = None, second_lead: bool = False
) -> dict:
    """Features and AAMI labels of every annotated beat of one MIT-BIH record (MLII).

    With ``second_lead`` (``--second-lead``, a cross-validation experiment), also the beat
    windows and dominant beats of the record's other lead (``second_lead_name``) at the same
    R peaks, as ``SECOND_LEAD_KEYS``; every other key is MLII's, as without it."""
    # the cache is keyed by the feature list, so changing the features cannot reuse stale ones
    version = f"{FEATURE_VERSION}-{len(RR_FEATURES)}-{WINDOW_SAMPLES}-{TEMPLATE_UPDATE_BEATS}"
    # the two-lead variant has its own file: a one-lead file must never be read for it, and
    # the one-lead file stays what it was (its name too)
    if second_lead:
        version += "-second-lead"
    cached = cache_dir / f"{name}-{version}.npz" if cache_dir else None
    if cached is not None and cached.is_file():
        with np.load(cached) as stored:
            return {key: stored[key] for key in stored.files}
    record = load_record(folder, name)
    # two annotations on one sample (rare) would break the strictly increasing R peaks
    keep = np.concatenate([[True], np.diff(record.beat_samples) > 0])
    windows, templates, rhythm = beat_features(
        record.signal_mv, record.fs, record.beat_samples[keep]
    )
    labels = np.array(
        [
            BEAT_CLASSES.index(cls)
            for cls, kept in zip(record.beat_classes, keep, strict=True)
            if kept
        ]
    )
    features = {
        "windows": windows,
        "templates": templates,
        "rhythm": rhythm,
        "labels": labels.astype(np.int64),
        # for the classifier's rhythm rule (S folded into N in AF context)
        "times_s": record.beat_samples[keep] / record.fs,
        "p_wave": beat_p_waves(windows, templates, rhythm),
    }
    if second_lead:
        # the same record and annotations, so the same R peaks and rate
        other = load_record(folder, name, lead=second_lead_name(folder, name))
        other_windows = beat_windows(other.signal_mv, other.fs, record.beat_samples[keep])
        features[SECOND_LEAD_KEYS[0]] = other_windows
        features[SECOND_LEAD_KEYS[1]] = dominant_beats(other_windows)
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **features)
    return features


def load_set(
    folder: Path, names: list[str], cache_dir: Path | None = None, second_lead: bool = False
) -> dict:
    parts = [
        record_features(folder, name, cache_dir, second_lead)
        for name in tqdm(names, desc="MIT-BIH records", unit="record")
    ]
    merged = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    merged["record"] = np.concatenate(
        [np.full(len(part["labels"]), name) for name, part in zip(names, parts, strict=True)]
    )
    return merged


# --- The second lead (a cross-validation experiment) --------------------------------------

# ``--second-lead`` gives the network each beat's window of the record's other lead too (V1 in
# most MIT-BIH records; V5 in 114, where MLII is the second signal; V4 in 124), as a second
# input channel divided by that lead's own dominant beat's amplitude. Why: model 4.0 reads
# MLII only, and its S beats stay far below the floor; de Chazal et al. 2004 used both leads,
# and V1 shows the P wave and aberrant conduction better than MLII. The rhythm features, the
# P wave and the AF rule stay MLII's. The served classifier reads one lead, so this is refused
# outside ``--cv``.
SECOND_LEAD_KEYS = ("windows_second_lead", "templates_second_lead")
SECOND_LEAD_REFUSAL = (
    "--second-lead is a cross-validation experiment; the served classifier reads one lead"
)


def second_lead_name(folder: Path, name: str) -> str:
    """The name of the MIT-BIH record's lead that is not MLII, read from its header (the
    signals' order differs between records: 114's first signal is V5, its second MLII)."""
    leads = wfdb.rdheader(str(Path(folder) / name)).sig_name
    others = [lead for lead in leads if lead != "MLII"]
    if "MLII" not in leads or len(others) != 1:
        raise ValueError(f"record {name} has leads {', '.join(leads)}, not MLII and one other")
    return others[0]


def with_second_lead(data: dict) -> dict:
    """``data`` whose ``windows`` and ``templates`` are two leads, (n_beats, 2, samples): MLII
    then the second lead (``TwoLeadBeatNet`` reads them so). Everything computed from the
    windows (rhythm features, P wave, AF rule) was computed from MLII's before."""
    windows_key, templates_key = SECOND_LEAD_KEYS
    rest = {key: value for key, value in data.items() if key not in SECOND_LEAD_KEYS}
    return {
        **rest,
        "windows": np.stack([data["windows"], data[windows_key]], axis=1),
        "templates": np.stack([data["templates"], data[templates_key]], axis=1),
    }


class TwoLeadBeatNet(BeatNet):
    """``BeatNet`` whose morphology branch reads two leads (``--second-lead``): windows and
    templates of shape (n_beats, 2, samples), each lead divided by its own dominant beat's
    peak-to-peak amplitude (as ``BeatNet`` divides its one lead), so the second lead's gain
    does not matter; with ``difference_channel``, each lead's beat minus its dominant beat as
    well (4 channels). The rest of the network is ``BeatNet``'s."""

    def __init__(
        self,
        n_rhythm: int = len(RR_FEATURES),
        morphology_dropout: float = 0.0,
        difference_channel: bool = True,
    ):
        super().__init__(
            n_rhythm=n_rhythm,
            morphology_dropout=morphology_dropout,
            difference_channel=difference_channel,
        )
        first = self.morphology[0]
        self.morphology[0] = nn.Conv1d(
            2 * first.in_channels,
            first.out_channels,
            kernel_size=first.kernel_size,
            padding=first.padding,
        )

    def forward(
        self, windows: torch.Tensor, templates: torch.Tensor, rhythm: torch.Tensor
    ) -> torch.Tensor:
        scale = (templates.amax(dim=2) - templates.amin(dim=2)).clamp(min=MIN_AMPLITUDE_MV)
        scale = scale.unsqueeze(2)  # (n_beats, 2 leads, 1)
        channels = windows / scale
        if self.difference_channel:
            channels = torch.cat([channels, (windows - templates) / scale], dim=1)
        return self.head(torch.cat([self.morphology(channels), self.rhythm(rhythm)], dim=1))


# --- Training -----------------------------------------------------------------------------


def class_weights(labels: np.ndarray, power: float, f_scale: float = 1.0) -> np.ndarray:
    """Loss weights ``(n_total / n_class) ** power``, scaled so N weighs 1.

    ``power`` 1 is inverse frequency (each class weighs equally), 0 no weighting; between
    them trades Se of the rare classes against their +P. A class with fewer than 50 training
    beats (Q in DS1) gets the weight of one with 50, so a handful of beats cannot dominate.
    ``f_scale`` multiplies the F (fusion) weight: nearly all of DS1's training F beats come
    from one patient (208), so a heavy F weight teaches that patient's shapes and pulls other
    patients' N and V beats into F.
    """
    counts = np.bincount(labels, minlength=len(BEAT_CLASSES)).astype(np.float64)
    weights = (counts.sum() / np.maximum(counts, 50)) ** power
    weights[BEAT_CLASSES.index("F")] *= f_scale
    return (weights / weights[0]).astype(np.float32)


def augment(
    windows: torch.Tensor, rhythm: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-keeping perturbations of a batch: the beat's amplitude scaled by 0.85-1.15
    against its dominant beat, white noise up to 0.03 mV, and a shift of up to 2 samples
    (11 ms) of the R peak position, as a detector's jitter.

    ``windows`` is (n_beats, samples), or (n_beats, leads, samples) with ``--second-lead``:
    a beat's leads then share its scale, noise level and shift (one heart, one R peak), each
    with its own noise. One lead draws exactly what the 2-D windows draw."""
    n = windows.shape[0]
    per_beat = (n,) + (1,) * (windows.dim() - 1)  # broadcast a beat's draw over its leads
    scale = 0.85 + 0.3 * torch.rand(n, 1, generator=generator)
    noise = (
        0.03
        * torch.rand(n, 1, generator=generator).view(per_beat)
        * torch.randn(windows.shape, generator=generator)
    )
    shift = torch.randint(-2, 3, (n,), generator=generator)
    n_samples = windows.shape[-1]
    index = (torch.arange(n_samples).unsqueeze(0) + shift.unsqueeze(1)).clamp(0, n_samples - 1)
    shifted = windows.gather(-1, index.view(*per_beat[:-1], n_samples).expand_as(windows))
    rhythm = rhythm.clone()
    amplitude_column = RR_COLUMN["amplitude_over_dominant"]
    rhythm[:, amplitude_column] = rhythm[:, amplitude_column] * scale[:, 0]
    return shifted * scale.view(per_beat) + noise, rhythm


def make_premature(
    rhythm: torch.Tensor,
    labels: torch.Tensor,
    fraction: float,
    generator: torch.Generator,
    p_wave_pool: torch.Tensor | None = None,
    keep_unknown: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn some normal beats of regular rhythm into premature supraventricular ones.

    AAMI's S class is, by definition, a supraventricular (normal-looking) beat that comes
    early. DS1's training patients have few such beats (most of their S beats are runs of
    supraventricular tachycardia with odd shapes, in records 207 and 209), so a network learns
    "S = odd shape" and misses the isolated premature beats other patients have. Here a
    ``fraction`` of the batch's N beats whose rhythm is regular (pre-RR within 10 % of the local
    mean, irregularity below 0.1, so nothing in atrial fibrillation) gets its pre-RR shortened
    to 50-85 % and its post-RR lengthened (up to a full compensatory pause), and the label S.
    The morphology is left as it is; the ratio features are recomputed from the new intervals.
    With ``p_wave_pool`` (rhythm rows that carry ``P_WAVE_COLUMNS``), the beat's P-wave
    correlation is drawn from it, as an atrial premature beat's (``relabel_regular_beats``,
    which ``keep_unknown`` is passed to).
    """

    def rewrite(rows, pre, local, average):
        early = 0.5 + 0.35 * torch.rand(len(rows), generator=generator)
        late = 1.0 + (1.0 - early) * torch.rand(len(rows), generator=generator)
        set_intervals(rows, pre * early, pre * late, local, average)
        if rows.shape[1] == RATE_RUN_COLUMN + 1:  # --rate-run-feature
            rows[:, RATE_RUN_COLUMN] = 0.0  # the interval before was the sinus one
        if rows.shape[1] == FUTURE_COLUMN + len(FUTURE_RR_COLUMNS):  # --future-rr-feature
            # one premature beat: the beats after it keep the sinus rhythm it interrupted
            set_future(rows, pre * early, pre * late, local, average)

    return relabel_regular_beats(
        rhythm, labels, fraction, generator, rewrite, p_wave_pool, keep_unknown
    )


def make_premature_runs(
    rhythm: torch.Tensor,
    labels: torch.Tensor,
    fraction: float,
    generator: torch.Generator,
    p_wave_pool: torch.Tensor | None = None,
    keep_unknown: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn some normal beats of regular rhythm into beats inside runs of premature
    supraventricular beats.

    ``make_premature``'s beats are early against both the local RR (median of the last 10
    intervals) and the average RR (mean of 5 min). A beat inside a run of atrial premature
    beats (an atrial run, bigeminy, premature beats that outnumber the sinus ones) is early
    against the average but much less, or not at all, against the local RR, which the run's
    own intervals have pulled down; and its post-RR is the run's next interval, not a pause.
    DS1 shows the network few such S beats with a normal shape (its in-run S beats are 207's
    and 209's tachycardias). Here a ``fraction`` of the batch's regular N beats (those
    ``make_premature`` made S are no longer N) becomes one, label S, morphology as it is, at
    the feature level (the rows are independent):

    - the sinus interval is the beat's local RR; the run's interval, the new pre-RR, is
      50-85 % of it (``early``);
    - the local RR moves from the sinus interval to the run's interval by a random weight
      (0: the run's first beat; 1: a beat deep in the run, whose last 10 intervals are the
      run's own), and local/average with it; the average RR (5 minutes) is left as it was;
    - the post-RR is, at random with even odds, the run's next interval (90-110 % of the
      pre-RR: inside the run) or a pause back to the sinus rhythm (1 to 2 - early sinus
      intervals, as ``make_premature``'s: at the run's end);
    - the RR irregularity (the mean absolute change of successive intervals over the last 10
      beats, this beat's own change left out, over the average RR) gains the run's entry, one
      change of (1 - early) sinus intervals among the 10: so it is for the 2nd to the 11th
      beat of a run (the run's first beat, and a beat over 10 beats deep, would not have it;
      the changes inside a run of equal intervals are nil);
    - every ratio is recomputed from the new intervals;
    - with ``p_wave_pool``, the P-wave correlation is drawn from it (``relabel_regular_beats``):
      a faster sinus rhythm keeps the sinus P wave, a run of atrial premature beats does not.
    """

    def rewrite(rows, pre, sinus, average):
        n = len(rows)
        early = 0.5 + 0.35 * torch.rand(n, generator=generator)
        depth = torch.rand(n, generator=generator)
        at_end = torch.rand(n, generator=generator) < 0.5
        spread = torch.rand(n, generator=generator)
        new_pre = sinus * early
        local = sinus + depth * (new_pre - sinus)
        post = torch.where(
            at_end, sinus * (1.0 + (1.0 - early) * spread), new_pre * (0.9 + 0.2 * spread)
        )
        set_intervals(rows, new_pre, post, local, average)
        rows[:, RR_COLUMN["local_over_average"]] = local / average
        rows[:, RR_COLUMN["local_irregularity"]] += (1.0 - early) * sinus / average / 10
        if rows.shape[1] == RATE_RUN_COLUMN + 1:  # --rate-run-feature
            # the beat's place in the run, as the local RR's weight says: 0 to 10 run
            # intervals before it
            rows[:, RATE_RUN_COLUMN] = torch.floor(depth * 11) / RATE_RUN_BEATS
        if rows.shape[1] == FUTURE_COLUMN + len(FUTURE_RR_COLUMNS):  # --future-rr-feature
            # the next 10 intervals: the rest of the run, then sinus ones. At the run's end
            # they are all sinus; inside it, a random share of them is still the run's.
            remaining = torch.where(at_end, 0.0, torch.rand(n, generator=generator))
            set_future(rows, new_pre, post, sinus + remaining * (new_pre - sinus), average)

    return relabel_regular_beats(
        rhythm, labels, fraction, generator, rewrite, p_wave_pool, keep_unknown
    )


def relabel_regular_beats(
    rhythm: torch.Tensor,
    labels: torch.Tensor,
    fraction: float,
    generator: torch.Generator,
    rewrite: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None],
    p_wave_pool: torch.Tensor | None = None,
    keep_unknown: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label S a random ``fraction`` of the N beats of regular rhythm (pre-RR within 10 % of
    the local RR, irregularity below 0.1: nothing in atrial fibrillation), their rhythm rows
    rewritten in place by ``rewrite(rows, pre_rr_s, local_rr_s, average_rr_s)``. Returns new
    tensors (the inputs are left as they are) or, where no beat is chosen, the inputs.

    With ``p_wave_pool`` the rows must carry ``P_WAVE_COLUMNS`` after ``RR_FEATURES``; each
    chosen beat's P-wave correlation is then drawn from the pool (uniformly among its values)
    and marked known: the beat keeps an N beat's QRS, so its P region is read, and an atrial
    premature beat's P wave is not the sinus one. With ``keep_unknown``, a beat whose P wave
    is unknown keeps it so (drawn all the same, for the generator's sake). Without a pool the
    generator draws nothing more.
    """
    if p_wave_pool is not None and rhythm.shape[1] != len(RR_FEATURES) + len(P_WAVE_COLUMNS):
        raise ValueError(
            f"p_wave_pool needs rhythm rows of {len(RR_FEATURES) + len(P_WAVE_COLUMNS)} "
            f"columns (RR_FEATURES and P_WAVE_COLUMNS), got {rhythm.shape[1]}"
        )
    regular = (
        (labels == 0)
        & ((rhythm[:, RR_COLUMN["pre_over_local"]] - 1).abs() < 0.1)
        & (rhythm[:, RR_COLUMN["local_irregularity"]] < 0.1)
    )
    chosen = regular & (torch.rand(len(labels), generator=generator) < fraction)
    if not chosen.any():
        return rhythm, labels
    rhythm, labels = rhythm.clone(), labels.clone()
    rows = rhythm[chosen]
    pre = rows[:, RR_COLUMN["pre_rr_s"]]
    local = pre / rows[:, RR_COLUMN["pre_over_local"]].clamp(min=1e-3)
    average = pre / rows[:, RR_COLUMN["pre_over_average"]].clamp(min=1e-3)
    rewrite(rows, pre, local, average)
    if p_wave_pool is not None:
        draw = torch.randint(len(p_wave_pool), (len(rows),), generator=generator)
        known = rows[:, len(RR_FEATURES) + 1] == 0 if keep_unknown else slice(None)
        rows[known, len(RR_FEATURES)] = p_wave_pool[draw][known]
        rows[known, len(RR_FEATURES) + 1] = 0.0
    rhythm[chosen] = rows
    labels[chosen] = BEAT_CLASSES.index("S")
    return rhythm, labels


def set_intervals(
    rows: torch.Tensor,
    pre: torch.Tensor,
    post: torch.Tensor,
    local: torch.Tensor,
    average: torch.Tensor,
) -> None:
    """Write new pre- and post-RR (s) into rhythm rows, with their ratios to the local and
    average RR (s) and to each other."""
    rows[:, RR_COLUMN["pre_rr_s"]] = pre
    rows[:, RR_COLUMN["post_rr_s"]] = post
    rows[:, RR_COLUMN["pre_over_local"]] = pre / local
    rows[:, RR_COLUMN["post_over_local"]] = post / local
    rows[:, RR_COLUMN["pre_over_average"]] = pre / average
    rows[:, RR_COLUMN["post_over_average"]] = post / average
    rows[:, RR_COLUMN["pre_over_post"]] = pre / post


# --- How long the rhythm has kept this beat's rate (a cross-validation experiment) --------

# ``--rate-run-feature`` appends one column after ``RR_FEATURES``: how many beats in a row just
# before this one had a pre-RR within ``RATE_RUN_TOLERANCE`` of its own, capped at
# ``RATE_RUN_BEATS`` and divided by it. Why: a run of premature beats and a sinus rhythm that
# sped up (or a 2:1 block that ended) look alike to the RR features for the 5 minutes the
# average RR takes to catch up (model 4.0's DS2 false S in 231, 113, 123), but a run lasts a
# few beats and a new sinus rate lasts minutes. An isolated premature beat has 0, the k-th beat
# of a run k - 1, a steady rhythm the cap.
RATE_RUN_COLUMN = len(RR_FEATURES)
RATE_RUN_BEATS = 64
RATE_RUN_TOLERANCE = 0.15


def rate_run_lengths(pre_rr_s: np.ndarray, record: np.ndarray) -> np.ndarray:
    """The ``--rate-run-feature`` column (float32, in [0, 1]) of beats in time order within
    each record (``record`` names each beat's record; a run never reaches into another)."""
    pre = np.asarray(pre_rr_s, dtype=np.float64)
    n = len(pre)
    index = np.arange(n)
    count = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    for lag in range(1, RATE_RUN_BEATS + 1):
        earlier = np.clip(index - lag, 0, None)
        alive &= (
            (index >= lag)
            & (record[earlier] == record)
            & (np.abs(pre[earlier] / np.maximum(pre, 1e-3) - 1) <= RATE_RUN_TOLERANCE)
        )
        count += alive
    return (count / RATE_RUN_BEATS).astype(np.float32)


def with_rate_run_feature(data: dict) -> dict:
    """``data`` with the ``--rate-run-feature`` column appended to its rhythm rows."""
    column = rate_run_lengths(data["rhythm"][:, RR_COLUMN["pre_rr_s"]], data["record"])
    return {**data, "rhythm": np.concatenate([data["rhythm"], column[:, np.newaxis]], axis=1)}


# --- The rhythm after the beat (a cross-validation experiment) ---------------------------

# ``--future-rr-feature`` appends ``FUTURE_RR_COLUMNS`` after ``RR_FEATURES``: the "future RR",
# the median of the 10 intervals after the beat's post-RR (pauses over twice the average RR
# left out), over the average RR, and the pre- and post-RR over it. Why: every rhythm feature
# now looks back, and a run of premature beats and a sinus rhythm that sped up (model 4.0's
# DS2 false S in 231, 113, 123) look alike from behind; after the beat they differ: a sinus
# rhythm keeps its new rate, an isolated premature beat or a short run gives way to the
# slower sinus rhythm again. De Chazal 2004's local average RR is centred on the beat for the
# same reason. The served pipeline would wait for 11 more beats (about 9 s at 70 bpm).
FUTURE_COLUMN = len(RR_FEATURES)
FUTURE_RR_COLUMNS = ("future_over_average", "pre_over_future", "post_over_future")
FUTURE_RR_BEATS = 10


def future_rr(pre_rr_s: np.ndarray, average_rr_s: np.ndarray, record: np.ndarray) -> np.ndarray:
    """Each beat's future RR (s): the median of the pre-RRs of the ``FUTURE_RR_BEATS`` beats
    after its next one, within its record (beats in time order per record), pauses longer than
    ``PAUSE_RATIO`` times the average RR left out; NaN where none is left (a record's end)."""
    pre = np.asarray(pre_rr_s, dtype=np.float64)
    n = len(pre)
    index = np.arange(n)
    later = np.full((n, FUTURE_RR_BEATS), np.nan)
    for k in range(FUTURE_RR_BEATS):
        other = np.minimum(index + 2 + k, n - 1)
        usable = (
            (index + 2 + k < n)
            & (record[other] == record)
            & (pre[other] <= PAUSE_RATIO * average_rr_s)
        )
        later[:, k] = np.where(usable, pre[other], np.nan)
    result = np.full(n, np.nan)
    known = np.isfinite(later).any(axis=1)
    result[known] = np.nanmedian(later[known], axis=1)
    return result


def with_future_rr_feature(data: dict) -> dict:
    """``data`` with the ``--future-rr-feature`` columns appended to its rhythm rows; where
    no later interval is known, the local RR (the last 10 intervals) stands in."""
    rhythm = data["rhythm"].astype(np.float64)
    pre = rhythm[:, RR_COLUMN["pre_rr_s"]]
    post = rhythm[:, RR_COLUMN["post_rr_s"]]
    average = pre / np.maximum(rhythm[:, RR_COLUMN["pre_over_average"]], 1e-3)
    local = pre / np.maximum(rhythm[:, RR_COLUMN["pre_over_local"]], 1e-3)
    future = future_rr(pre, average, data["record"])
    future = np.where(np.isfinite(future), future, local)
    columns = np.stack([future / average, pre / future, post / future], axis=1)
    columns = np.clip(columns, 0.0, MAX_RATIO).astype(np.float32)
    return {**data, "rhythm": np.concatenate([data["rhythm"], columns], axis=1)}


def set_future(
    rows: torch.Tensor,
    pre: torch.Tensor,
    post: torch.Tensor,
    future: torch.Tensor,
    average: torch.Tensor,
) -> None:
    """Write a synthetic beat's future RR (s) into its ``--future-rr-feature`` columns."""
    rows[:, FUTURE_COLUMN] = future / average
    rows[:, FUTURE_COLUMN + 1] = pre / future
    rows[:, FUTURE_COLUMN + 2] = post / future


# --- Synthetic S beats' P waves -----------------------------------------------------------

# ``--synthetic-s-p-wave donor``: the synthetic S beats (``make_premature``,
# ``make_premature_runs``) are regular N beats relabelled, so they carry their patient's sinus P
# wave; trained on them, the CNN learns that a sinus P wave before an early beat is no evidence
# against S, and a faster sinus rhythm (sinus P waves) is what DS2's false S were. With
# ``donor``, each synthetic S beat's window before its QRS (from the window's
# start to ``P_SWAP_END_S`` before the R peak: the P-wave stretch of ``inference.atrial``, whose
# last 4 samples are blended with the beat's own, and most of the PR segment) is replaced by the
# same stretch of a real S beat of the training patients whose QRS matches its dominant beat,
# scaled by the two dominant beats' amplitudes: an atrial premature beat's P wave, often inside
# the previous beat's T wave, is not the sinus one. The window is augmented after the swap, so
# the borrowed stretch gets the same scale, noise and jitter as the rest.
P_SWAP_END_S = 0.07  # before the R peak: the QRS starts about 0.05 s before it
P_SWAP_END = round((WINDOW_BEFORE_S - P_SWAP_END_S) * BEAT_FS_HZ)  # window index 38
P_SWAP_FADE = 6  # samples (33 ms) over which the donor stretch gives way to the beat's own
SYNTHETIC_S_P_WAVES = ("keep", "donor", "donor-and-v", "donor-keep-qrs-features")
# ``donor-and-v``: half the real V beats of each batch get a donor stretch as well. A V beat's
# label is its QRS's, whatever comes before it; without this, "not a sinus P wave before the
# QRS" is evidence for S that V beats, which have none, also carry (DS1: more V called S).
V_DONOR_SHARE = 0.5
# ``donor-keep-qrs-features``: as ``donor``, but the beat keeps the QRS-correlation and amplitude
# features of the window it had (recomputed, the correlation falls, on DS1's regular N beats
# from a mean of 0.965 to 0.932, toward V beats' values: a test of whether that is how "donor"
# raised V called S).


def p_wave_donors(train: dict) -> torch.Tensor:
    """The windows whose P-wave stretch synthetic S beats borrow (``--synthetic-s-p-wave
    donor``): the training patients' S beats whose window correlates with their dominant beat
    at least ``atrial.QRS_MATCH_MIN`` (a supraventricular beat with a normal QRS, as a synthetic
    one has), each divided by its dominant beat's peak-to-peak amplitude."""
    correlation = train["rhythm"][:, RR_COLUMN["correlation_with_dominant"]]
    chosen = (train["labels"] == BEAT_CLASSES.index("S")) & (correlation >= QRS_MATCH_MIN)
    if not chosen.any():
        raise ValueError("no S beat with a normal QRS to borrow a P wave from")
    scale = np.maximum(np.ptp(train["templates"][chosen], axis=1), MIN_AMPLITUDE_MV)
    return torch.from_numpy((train["windows"][chosen] / scale[:, np.newaxis]).astype(np.float32))


def swap_p_waves(
    windows: torch.Tensor,
    templates: torch.Tensor,
    rhythm: torch.Tensor,
    chosen: torch.Tensor,
    donors: torch.Tensor,
    generator: torch.Generator,
    flat_unknown: bool = False,
    qrs_features: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``chosen`` beats' windows with the stretch before ``P_SWAP_END`` taken from a random
    donor (``p_wave_donors``) scaled to the beat's dominant amplitude and shifted to meet the
    beat's own signal at ``P_SWAP_END``, blended into it over the last ``P_SWAP_FADE`` samples;
    their correlation and amplitude rhythm features are recomputed from the new windows as
    ``inference.beats.rhythm_features`` computes them, and so are their ``P_WAVE_COLUMNS``
    where the rows carry them (``--p-wave-feature``; ``flat_unknown`` as there), so that the
    P-wave value agrees with the P wave the window now shows. Without ``qrs_features`` the
    correlation and amplitude features are left as they were. Returns new tensors."""
    if not chosen.any():
        return windows, rhythm
    windows, rhythm = windows.clone(), rhythm.clone()
    rows = windows[chosen]
    own_templates = templates[chosen]
    scale = (own_templates.amax(dim=1) - own_templates.amin(dim=1)).clamp(min=MIN_AMPLITUDE_MV)
    draw = torch.randint(len(donors), (len(rows),), generator=generator)
    donor = donors[draw] * scale[:, None]
    donor = donor + (rows[:, P_SWAP_END] - donor[:, P_SWAP_END])[:, None]
    own = torch.zeros(P_SWAP_END)
    own[P_SWAP_END - P_SWAP_FADE :] = torch.arange(1, P_SWAP_FADE + 1) / (P_SWAP_FADE + 1)
    rows[:, :P_SWAP_END] = donor[:, :P_SWAP_END] * (1 - own) + rows[:, :P_SWAP_END] * own
    windows[chosen] = rows
    if qrs_features:  # the RR columns stay; rhythm_features recomputes the last two
        n_rr = RR_COLUMN["correlation_with_dominant"]
        recomputed = rhythm_features(
            rhythm[chosen, :n_rr].numpy(), rows.numpy(), own_templates.numpy()
        )
        rhythm[chosen, n_rr : len(RR_FEATURES)] = torch.from_numpy(recomputed[:, n_rr:])
    if rhythm.shape[1] == len(RR_FEATURES) + len(P_WAVE_COLUMNS):
        p_wave = beat_p_waves(rows.numpy(), own_templates.numpy(), rhythm[chosen].numpy())
        rhythm[chosen, len(RR_FEATURES) :] = torch.from_numpy(p_wave_columns(p_wave, flat_unknown))
    return windows, rhythm


# --- The P wave as a rhythm feature (a cross-validation experiment) -----------------------

# ``--p-wave-feature`` appends these columns after ``RR_FEATURES``: the beat's P-wave
# correlation with its dominant beat (``beat_p_waves``), an unknown one written as 0, and 1
# where it is unknown. Encodings (``P_WAVE_ENCODINGS``):
# - "nan-unknown": unknown is NaN only (the beat's QRS does not match the dominant beat, so
#   its P region means nothing); 0 is kept as a value, "the dominant beat has no P wave"
#   (``atrial.p_wave_correlation`` writes exactly 0 where the dominant beat's P stretch is
#   flat: most N beats of DS1's 201, 203 and 207);
# - "flat-unknown": that exact 0 is unknown too (with a flat dominant P stretch there is no
#   sinus P wave to compare with), the synthetic S beats draw from S beats whose P wave was
#   compared (not 0), and a synthetic S beat made from a beat whose P wave is unknown keeps it
#   unknown (an atrial premature beat of that patient would not be compared either);
# - "gated": flat-unknown's columns and synthetic S beats, but the network's rhythm branch
#   does not read them: a small learned term moves the N/S split only (``PWaveGatedNet``).
#   The plain features failed in two ways: nan-unknown read 207's flat P stretch (0) as "not
#   sinus", so its N beats turned S; flat-unknown's "unknown" flag, which most V beats carry,
#   pushed N beats toward V. The gate gives an unknown P wave exactly no effect and keeps the
#   P wave away from V, F and Q.
P_WAVE_COLUMNS = ("p_wave_correlation", "p_wave_unknown")
P_WAVE_ENCODINGS = ("nan-unknown", "flat-unknown", "gated")
# the encodings that call an exact 0 (flat dominant P stretch) unknown
FLAT_UNKNOWN_ENCODINGS = ("flat-unknown", "gated")
P_WAVE_REFUSAL = (
    "--p-wave-feature is a cross-validation experiment; the served classifier does not take "
    "the P wave as an input yet"
)


def p_wave_columns(p_wave: np.ndarray, flat_unknown: bool = False) -> np.ndarray:
    """The ``P_WAVE_COLUMNS`` of each beat, float32 (n_beats, 2), from ``beat_p_waves``;
    with ``flat_unknown``, an exact 0 (flat dominant P stretch) is unknown as NaN is."""
    p_wave = np.asarray(p_wave, dtype=np.float64)
    unknown = np.isnan(p_wave) | (flat_unknown & (p_wave == 0))
    return np.stack([np.where(unknown, 0.0, p_wave), unknown.astype(np.float64)], axis=1).astype(
        np.float32
    )


def with_p_wave_feature(data: dict, flat_unknown: bool = False) -> dict:
    """``data`` with ``P_WAVE_COLUMNS`` appended to its rhythm rows (the other keys shared)."""
    columns = p_wave_columns(data["p_wave"], flat_unknown)
    rhythm = np.concatenate([data["rhythm"], columns], axis=1)
    return {**data, "rhythm": rhythm}


def synthetic_p_wave_pool(train: dict, flat_unknown: bool = False) -> torch.Tensor:
    """The P-wave correlations the synthetic S beats draw from: those of the training
    patients' real S beats whose QRS matches the dominant beat (as a synthetic beat's, an N
    beat's shape, does). DS1's S beats spread over the whole range (median about 0, 18 %
    above 0.8), its N beats sit near 1 (median 0.94); drawing from the training folds' own S
    beats keeps the held-out patients out of it. With ``flat_unknown``, without the exact 0s
    (flat dominant P stretch: nothing was compared)."""
    p_wave = train["p_wave"]
    known = (train["labels"] == BEAT_CLASSES.index("S")) & np.isfinite(p_wave)
    if flat_unknown:
        known &= p_wave != 0
    if not known.any():
        raise ValueError("no S beat with a P-wave correlation to draw synthetic ones from")
    return torch.from_numpy(p_wave[known].astype(np.float32))


class PWaveGatedNet(nn.Module):
    """A ``BeatNet`` on ``RR_FEATURES`` plus a P-wave term that acts only between N and S
    (``--p-wave-feature gated``, a cross-validation experiment).

    The rhythm rows carry ``P_WAVE_COLUMNS`` after ``RR_FEATURES``; the network reads only
    ``RR_FEATURES``. ``term = tanh(w * correlation + b)``, in (-1, 1), is the P wave's vote: it
    multiplies the N:S odds by exp(2 term) (S logit + term, N logit - term), and the pair is
    then shifted back so that P(N) + P(S) is unchanged: the V, F and Q probabilities never
    depend on the P wave (adding to S alone, or +/- without the shift, would move S or N
    against V; the flat-unknown flag's harm was exactly N beats pushed toward V). Where the
    P wave is unknown (flagged) the logits are the network's own, bit for bit: a patient
    whose dominant beat shows no P wave (207) and most V beats (QRS unlike the dominant
    beat's) get no P-wave vote at all. Bounded and linear (2 parameters), so the P wave cannot
    overrule the rest and learns one thing: a P wave like the sinus one argues for N.
    """

    def __init__(self, network: BeatNet):
        super().__init__()
        self.network = network
        self.p_wave = nn.Linear(1, 1)

    def p_wave_term(self, rhythm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The P-wave vote of each row (positive: toward S) and whether its P wave is known."""
        correlation = rhythm[:, len(RR_FEATURES) : len(RR_FEATURES) + 1]
        known = rhythm[:, len(RR_FEATURES) + 1] == 0
        return torch.tanh(self.p_wave(correlation)).squeeze(1), known

    def forward(
        self, windows: torch.Tensor, templates: torch.Tensor, rhythm: torch.Tensor
    ) -> torch.Tensor:
        logits = self.network(windows, templates, rhythm[:, : len(RR_FEATURES)])
        term, known = self.p_wave_term(rhythm)
        pair_columns = [BEAT_CLASSES.index("N"), BEAT_CLASSES.index("S")]
        pair = logits[:, pair_columns]
        moved = pair + term.unsqueeze(1) * torch.tensor([-1.0, 1.0])
        # the same log(P(N) + P(S)) (up to the softmax's shared constant) as before the vote
        moved = moved - moved.logsumexp(1, keepdim=True) + pair.logsumexp(1, keepdim=True)
        logits = logits.clone()
        logits[:, pair_columns] = torch.where(known.unsqueeze(1), moved, pair)
        return logits


def cv_network(n_rhythm: int, args: argparse.Namespace) -> nn.Module:
    """The network a cross-validation fold trains: a ``BeatNet`` on every rhythm column, or,
    with ``--p-wave-feature gated``, one on ``RR_FEATURES`` inside a ``PWaveGatedNet``; with
    ``--second-lead``, a ``TwoLeadBeatNet`` instead of the ``BeatNet``."""
    gated = args.p_wave_feature == "gated"
    network = (TwoLeadBeatNet if getattr(args, "second_lead", False) else BeatNet)(
        n_rhythm=len(RR_FEATURES) if gated else n_rhythm,
        morphology_dropout=args.morphology_dropout,
        difference_channel=args.difference_channel,
    )
    return PWaveGatedNet(network) if gated else network


def predict(
    model: nn.Module, data: dict, fold_s_in_af: bool = False, batch_size: int = 4096
) -> np.ndarray:
    """Class probabilities of every beat of ``data``; with ``fold_s_in_af``, after the
    served classifier's rhythm rule (``BeatClassifier.in_context``)."""
    probabilities = _network_probabilities(model, data, batch_size)
    return fold_by_record(probabilities, data) if fold_s_in_af else probabilities


def fold_by_record(probabilities: np.ndarray, data: dict) -> np.ndarray:
    """The served classifier's fold (``BeatClassifier.in_context``) applied record by record
    (each record's beats are contiguous and in time order in ``data``)."""
    probabilities = np.array(probabilities)
    for name in dict.fromkeys(data["record"].tolist()):
        rows = np.flatnonzero(data["record"] == name)
        probabilities[rows] = fold_s_in_af(
            probabilities[rows], data["times_s"][rows], data["p_wave"][rows]
        )
    return probabilities


def _network_probabilities(model: nn.Module, data: dict, batch_size: int) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(data["labels"]), batch_size):
            part = slice(start, start + batch_size)
            logits = model(
                torch.from_numpy(data["windows"][part]),
                torch.from_numpy(data["templates"][part]),
                torch.from_numpy(data["rhythm"][part]),
            )
            out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out)


def selection_score(metrics: dict) -> float:
    """What early stopping maximises on the validation patients: the mean of the S and V
    F1 (the classes the floor and goal are about), NaN counted as 0."""
    f1 = [metrics["classes"][name]["f1"] for name in ("S", "V")]
    # undefined: NaN in a run, null in a CV file read back (--cv-results)
    return float(np.mean([0.0 if value is None or value != value else value for value in f1]))


def train_epochs(model: nn.Module, train: dict, args: argparse.Namespace) -> Iterator[dict]:
    """Adam + class-weighted cross-entropy for ``args.epochs`` epochs (cosine decay of the
    learning rate to zero over them); yields ``{"epoch", "train_loss"}`` after each epoch,
    so that a caller can score held-out patients between epochs."""
    generator = torch.Generator().manual_seed(args.seed)
    tensors = {key: torch.from_numpy(train[key]) for key in ("windows", "templates", "rhythm")}
    labels = torch.from_numpy(train["labels"])
    weights = torch.from_numpy(
        class_weights(train["labels"], args.weight_power, args.f_weight_scale)
    )
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    # --p-wave-feature: the synthetic S beats get the P wave of one of the training folds' S
    encoding = args.p_wave_feature
    flat_unknown = encoding in FLAT_UNKNOWN_ENCODINGS
    p_wave_pool = synthetic_p_wave_pool(train, flat_unknown) if encoding else None
    donors = p_wave_donors(train) if args.synthetic_s_p_wave != "keep" else None
    v_donors = args.synthetic_s_p_wave == "donor-and-v"
    optimizer = torch.optim.Adam(
        model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay
    )
    # cosine decay to zero over the planned epochs: late epochs change the weights little,
    # so the number of epochs fixed from cross-validation is not a knife edge
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    stop = getattr(args, "stop_epoch", None) or args.epochs
    for epoch in range(1, min(stop, args.epochs) + 1):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), args.batch_size):
            index = order[start : start + args.batch_size]
            windows, rhythm = tensors["windows"][index], tensors["rhythm"][index]
            targets = labels[index]
            # with donor P waves, augment after the swap, so the borrowed stretch gets the same
            # scale, noise and jitter as the rest of the window (before, it stayed un-augmented:
            # a quieter stretch before the QRS that only synthetic S beats had)
            if args.augment and donors is None:
                windows, rhythm = augment(windows, rhythm, generator)
            if args.synthetic_premature > 0:
                rhythm, targets = make_premature(
                    rhythm, targets, args.synthetic_premature, generator, p_wave_pool, flat_unknown
                )
            if args.synthetic_premature_runs > 0:
                rhythm, targets = make_premature_runs(
                    rhythm,
                    targets,
                    args.synthetic_premature_runs,
                    generator,
                    p_wave_pool,
                    flat_unknown,
                )
            if donors is not None:
                swapped = (targets == BEAT_CLASSES.index("S")) & (labels[index] == 0)
                if v_donors:
                    swapped |= (targets == BEAT_CLASSES.index("V")) & (
                        torch.rand(len(targets), generator=generator) < V_DONOR_SHARE
                    )
                windows, rhythm = swap_p_waves(
                    windows,
                    tensors["templates"][index],
                    rhythm,
                    swapped,
                    donors,
                    generator,
                    flat_unknown,
                    qrs_features=args.synthetic_s_p_wave != "donor-keep-qrs-features",
                )
                if args.augment:
                    windows, rhythm = augment(windows, rhythm, generator)
            logits = model(windows, tensors["templates"][index], rhythm)
            loss = loss_fn(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(index)
        scheduler.step()
        model.eval()
        yield {"epoch": epoch, "train_loss": total_loss / len(order)}


def fit(model: BeatNet, train: dict, args: argparse.Namespace) -> list[dict]:
    """Train with the schedule of ``args.epochs`` epochs, stopping after ``args.stop_epoch``
    (the epoch of that schedule that cross-validation chose)."""
    history = []
    total = min(args.stop_epoch or args.epochs, args.epochs)
    for row in tqdm(train_epochs(model, train, args), total=total, desc="epochs"):
        history.append(rounded(row))
        print(f"epoch {row['epoch']:2d}: train loss {row['train_loss']:.4f}", flush=True)
    return history


# --- Grouped cross-validation over the DS1 patients ---------------------------------------


def patient_folds(records: list[str], n_folds: int, seed: int = 0) -> list[list[str]]:
    """Split patients into ``n_folds`` groups: a seeded shuffle dealt round-robin, so each
    patient is held out exactly once and no patient is on both sides of a split."""
    if not 2 <= n_folds <= len(records):
        raise ValueError(f"n_folds must be between 2 and {len(records)}, got {n_folds}")
    order = np.random.default_rng(seed).permutation(len(records))
    return [[records[i] for i in order[fold::n_folds]] for fold in range(n_folds)]


def subset(data: dict, mask: np.ndarray) -> dict:
    return {key: value[mask] for key, value in data.items()}


def summary_features(data: dict) -> np.ndarray:
    """Features of the non-network baselines: the rhythm features plus the beat and the beat
    minus its dominant beat over the dominant beat's amplitude, every 6th sample (33 ms; a
    coarse morphology in the spirit of de Chazal 2004's sampled QRS and T waves)."""
    windows, templates = data["windows"], data["templates"]
    scale = np.maximum(np.ptp(templates, axis=1, keepdims=True), MIN_AMPLITUDE_MV)
    beat = windows[:, ::6] / scale
    difference = (windows - templates)[:, ::6] / scale
    return np.concatenate([data["rhythm"], beat, difference], axis=1).astype(np.float32)


def cross_validate(data: dict, args: argparse.Namespace) -> dict:
    """Leave-patients-out cross-validation over DS1: train on the other folds, predict the
    held-out patients, pool the held-out predictions of all folds and score them.

    Returns ``{"folds", "model", "probabilities"}``: probabilities of every DS1 beat, of
    shape (epochs, n_beats, 5) for the network (held-out predictions after each epoch, so
    that the number of epochs can be chosen on the pooled curve) and (1, n_beats, 5) for the
    baselines.
    """
    records = list(dict.fromkeys(data["record"].tolist()))
    folds = patient_folds(records, args.cv, args.fold_seed)
    n_steps = args.epochs if args.model == "cnn" else 1
    probabilities = np.zeros((n_steps, len(data["labels"]), len(BEAT_CLASSES)), np.float32)
    for held_out in tqdm(folds, desc=f"{args.model} folds", unit="fold"):
        test_mask = np.isin(data["record"], held_out)
        train, test = subset(data, ~test_mask), subset(data, test_mask)
        if args.model == "cnn":
            torch.manual_seed(args.seed)
            model = cv_network(data["rhythm"].shape[1], args)
            for row in train_epochs(model, train, args):
                probabilities[row["epoch"] - 1, test_mask] = predict(model, test, args.fold_s_in_af)
        else:
            probabilities[0, test_mask] = baseline_probabilities(train, test, args)
            if args.fold_s_in_af:
                probabilities[0, test_mask] = fold_by_record(probabilities[0, test_mask], test)
    return {"folds": folds, "model": args.model, "probabilities": probabilities}


def baseline_probabilities(train: dict, test: dict, args: argparse.Namespace) -> np.ndarray:
    """Fit a non-network baseline on ``train`` and return its probabilities on ``test``.

    ``logreg``: standardised features, multinomial logistic regression; ``hgb``: scikit-
    learn's histogram gradient boosting. Both weigh beats with ``class_weights``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    weights = class_weights(train["labels"], args.weight_power, args.f_weight_scale)
    sample_weight = weights[train["labels"]]
    if args.model == "logreg":
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
        model.fit(
            summary_features(train),
            train["labels"],
            logisticregression__sample_weight=sample_weight,
        )
    elif args.model == "hgb":
        model = HistGradientBoostingClassifier(
            max_iter=200,
            learning_rate=0.1,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            random_state=args.seed,
        )
        model.fit(summary_features(train), train["labels"], sample_weight=sample_weight)
    else:
        raise ValueError(f"unknown model {args.model!r}; choose cnn, hgb or logreg")
    out = np.zeros((len(test["labels"]), len(BEAT_CLASSES)), np.float32)
    out[:, model.classes_] = model.predict_proba(summary_features(test))
    return out


def cv_report(labels: np.ndarray, probabilities: np.ndarray) -> list[dict]:
    """Pooled held-out metrics after each epoch (one row per step of ``probabilities``)."""
    rows = []
    for step, probs in enumerate(probabilities, start=1):
        metrics = beat_metrics(labels, probs.argmax(axis=1))
        rows.append(
            {
                "epoch": step,
                "accuracy": metrics["accuracy"],
                "s_f1": metrics["classes"]["S"]["f1"],
                "v_f1": metrics["classes"]["V"]["f1"],
                "score": selection_score(metrics),
                "metrics": metrics,
            }
        )
    return rows


# --- Pictures and card --------------------------------------------------------------------


def plot_cv(rows: list[dict], path: Path, title: str) -> None:
    """Pooled held-out DS1 cross-validation scores after each epoch (the chosen recipe)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    figure, axis = plt.subplots(figsize=(6, 3.6))
    axis.plot(epochs, [row["accuracy"] for row in rows], label="accuracy")
    axis.plot(epochs, [row["s_f1"] for row in rows], label="S F1")
    axis.plot(epochs, [row["v_f1"] for row in rows], label="V F1")
    axis.set(xlabel="epoch", title=title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def published_table(ds2: dict) -> str:
    """Our DS2 figures beside the published inter-patient DS2 results and our previous model."""

    def cell(value, percent: bool = True) -> str:
        if value is None:
            return "–"
        if percent:
            return f"{value:.1f}"
        # an F1 as its source printed it (0.20, 0.897): rounding 0.897 to 0.90 would read as a
        # floor of 0.90 met
        return f"{value:.2f}" if round(value, 2) == value else f"{value:.3f}"

    lines = [
        "| DS2 (inter-patient) | S Se | S +P | S F1 | V Se | V +P | V F1 | accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s_se, s_ppv, s_f1, v_se, v_ppv, v_f1, accuracy in PUBLISHED + PREVIOUS:
        lines.append(
            f"| {name} | {cell(s_se)} | {cell(s_ppv)} | {cell(s_f1, False)} | {cell(v_se)} | "
            f"{cell(v_ppv)} | {cell(v_f1, False)} | {cell(accuracy)} |"
        )
    for label, metrics in (
        ("**this model, reference beats**", ds2["reference"]),
        ("**this model, our detected beats**", ds2["end_to_end"]),
    ):
        s, v = metrics["classes"]["S"], metrics["classes"]["V"]
        lines.append(
            f"| {label} | {100 * s['se']:.1f} | {100 * s['ppv']:.1f} | {s['f1']:.3f} | "
            f"{100 * v['se']:.1f} | {100 * v['ppv']:.1f} | {v['f1']:.3f} | "
            f"{100 * metrics['accuracy']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def without_232(ds2: dict) -> dict:
    """DS2 on reference beats without record 232, whose 1,382 atrial premature beats are
    three quarters of DS2's S beats: the class figures of one patient's rhythm dominate S."""
    rows = [row for row in ds2["per_record"] if row["record"] != "232"]
    confusion = sum(np.asarray(row["reference"]["confusion"]) for row in rows)
    return metrics_from_confusion(confusion)


def targets_note(reference: dict) -> str:
    s_f1 = reference["classes"]["S"]["f1"]
    v_f1 = reference["classes"]["V"]["f1"]
    accuracy = reference["accuracy"]
    checks = [
        ("S F1", s_f1, 0.77, 0.85),
        ("V F1", v_f1, 0.90, 0.95),
        ("accuracy", accuracy, 0.93, 0.96),
    ]
    return "; ".join(
        f"{name} {value:.3f}: floor {floor} {'met' if value >= floor else 'NOT met'}, "
        f"goal {goal} {'met' if value >= goal else 'not met'}"
        for name, value, floor, goal in checks
    )


def cv_summary(rows: list[dict], folds: list[list[str]], label: str, command: str) -> dict:
    """What a cross-validation run leaves for the card: its best step and its curve."""
    best = max(rows, key=lambda row: row["score"])
    return {
        "label": label,
        "command": command,
        "folds": folds,
        "best_epoch": best["epoch"],
        "best": rounded(best["metrics"]),
        "steps": [
            rounded({key: row[key] for key in ("epoch", "accuracy", "s_f1", "v_f1", "score")})
            for row in rows
        ],
    }


def cv_table(summaries: list[dict]) -> str:
    """The candidates side by side on the pooled held-out DS1 predictions."""
    lines = [
        "| candidate (DS1, 5-fold leave-patients-out) | epochs | S Se | S +P | S F1 | V Se | "
        "V +P | V F1 | accuracy | mean S/V F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def percent(value) -> str:
        # undefined (NaN in a run, null in a CV file read back): a dash
        return "–" if value is None or value != value else f"{100 * value:.1f}"

    def fraction(value) -> str:
        return "–" if value is None or value != value else f"{value:.3f}"

    for summary in summaries:
        metrics = summary["best"]
        s, v = metrics["classes"]["S"], metrics["classes"]["V"]
        # a network's pooled score is read after each epoch; a baseline has one fit
        epochs = summary["best_epoch"] if len(summary["steps"]) > 1 else "–"
        label = f"**{summary['label']}**" if summary.get("chosen") else summary["label"]
        lines.append(
            f"| {label} | {epochs} | {percent(s['se'])} | "
            f"{percent(s['ppv'])} | {fraction(s['f1'])} | {percent(v['se'])} | "
            f"{percent(v['ppv'])} | {fraction(v['f1'])} | {percent(metrics['accuracy'])} | "
            f"{selection_score(metrics):.3f} |"
        )
    return "\n".join(lines) + "\n"


def write_model(
    model: nn.Module,
    args: argparse.Namespace,
    history: list[dict],
    results: dict,
    timing: dict,
    cv_runs: list[dict],
) -> None:
    weights_dir, docs_dir = args.weights_dir, args.docs_dir
    make_run_dirs(weights_dir, docs_dir)
    torch.save(model.state_dict(), weights_dir / f"{NAME}.pt")
    command = reproduce_command(args)
    ds2 = results["ds2"]  # None for an interim model (--no-test): DS2 not evaluated
    card = {
        "name": NAME,
        "version": f"{MODEL_VERSION}.{args.seed}",
        "weights": f"{NAME}.pt",
        "task": "beats",
        "architecture": "BeatNet",
        "difference_channel": args.difference_channel,
        "fold_s_in_af": args.fold_s_in_af,
        "parameters": count_parameters(model),
        "classes": list(BEAT_CLASSES),
        "input": {
            "lead": "II (MLII)",
            "units": "mV",
            "fs_hz": "any from 100 to 2000; windows read at 180 Hz",
            "window": {
                "fs_hz": BEAT_FS_HZ,
                "before_r_s": WINDOW_BEFORE_S,
                "after_r_s": WINDOW_AFTER_S,
                "n_samples": WINDOW_SAMPLES,
            },
            "preprocessing": f"band-pass {BANDPASS_HZ[0]}-{BANDPASS_HZ[1]} Hz (zero-phase); "
            "window median removed; the beat"
            + (" and the beat minus the running dominant beat" if args.difference_channel else "")
            + " over the dominant beat's peak-to-peak amplitude",
            "rhythm_features": list(RR_FEATURES),
        },
        "data": "MIT-BIH Arrhythmia Database, lead MLII at 360 Hz, every annotated beat "
        "(AAMI EC57 classes; paced records 102, 104, 107, 217 excluded)",
        "split": {
            "train": list(DS1),
            "test": list(DS2),
            "scheme": "inter-patient (de Chazal 2004): every choice made by 5-fold "
            "leave-patients-out cross-validation over DS1; the final model trained on all of "
            "DS1 for the epochs fixed by it; DS2 read once for this model",
            "what_the_choice_knew_of_ds2": args.ds2_note or "nothing",
        },
        "seed": args.seed,
        "members": args.members,
        "recipe": {
            "epochs": args.stop_epoch or args.epochs,
            "schedule_epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": "Adam",
            "learning_rate": args.learning_rate,
            "schedule": "cosine decay to 0 over schedule_epochs, stopped after epochs",
            "morphology_dropout": args.morphology_dropout,
            "synthetic_premature": args.synthetic_premature,
            "synthetic_premature_runs": args.synthetic_premature_runs,
            "weight_decay": args.weight_decay,
            "loss": f"cross-entropy, class weights (n / n_class) ** {args.weight_power}, "
            f"F weight x {args.f_weight_scale}",
            "class_weights": [round(float(w), 3) for w in timing["class_weights"]],
            "augmentation": "amplitude, noise, R-peak jitter" if args.augment else "none",
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "code_commit": git_commit(),
        # the CPU and maths libraries decide whether the same command repeats bit for bit
        "environment": training_environment(),
        "training_cpu_s": round(timing["cpu_s"], 1),
        "training_wall_s": round(timing["wall_s"], 1),
        "cross_validation": cv_runs,
        "metrics": {},
        "ds2_reads_for_beat_task": args.ds2_evaluations if ds2 else args.ds2_evaluations - 1,
        "history": history,
        "previous_models": [dict(zip(PREVIOUS_KEYS, row, strict=True)) for row in PREVIOUS],
        "command": command,
        "evaluate_command": "python -m inference.evaluate beats --data DIR/mitdb --records ds2",
        "limits": "Single lead (MLII), trained on 22 patients of a 1970s Holter database; Q "
        "(unclassifiable) and F (fusion) have few training beats; not validated prospectively.",
    }
    if ds2:
        card["metrics"]["ds2_reference"] = rounded(ds2["reference"])
        card["metrics"]["ds2_end_to_end"] = rounded(ds2["end_to_end"])
        card["metrics"]["ds2_reference_without_232"] = rounded(without_232(ds2))
        card["ds2_per_record"] = ds2["per_record"]
    else:
        card["metrics"]["ds2"] = "not evaluated: an interim model (--no-test)"
    (weights_dir / f"{NAME}.json").write_text(json_text(card))
    chosen = next((run for run in cv_runs if run.get("chosen")), None)
    if chosen is not None:
        plot_cv(chosen["steps"], docs_dir / f"{NAME}-cv.png", "DS1 cross-validation, pooled")
    (docs_dir / f"{NAME}.md").write_text(card_markdown(model, args, card, results, timing))
    print(f"wrote {weights_dir / NAME}.pt/.json and {docs_dir / NAME}.md")
    if not args.replace_shipped:
        print(f"the shipped model is unchanged; this run's files are in {weights_dir}")


def card_markdown(
    model: nn.Module, args: argparse.Namespace, card: dict, results: dict, timing: dict
) -> str:
    ds2 = results["ds2"]
    cv_runs = card["cross_validation"]
    cv_section = (
        "## How it was chosen: cross-validation on DS1 only\n\n"
        "Every candidate was trained on the patients of four folds and scored on the fifth "
        "fold's patients, for each of the 5 folds (patients dealt at random, seed 0: "
        + "; ".join(", ".join(fold) for fold in (cv_runs[0]["folds"] if cv_runs else []))
        + "); the held-out predictions of all 22 patients are pooled and scored. The network's "
        "number of epochs is the one with the best pooled mean of S and V F1. The shipped "
        "candidate is in bold. "
        + (f"{args.ds2_note} " if args.ds2_note else "DS2 played no part. ")
        + (args.choice_note or "It is the one with the best mean S/V F1.")
        + "\n\n"
        + cv_table(cv_runs)
        + "\nCommands:\n\n"
        + "".join(f"- `{run['command']}`\n" for run in cv_runs)
        + "\n![DS1 cross-validation curve](beat-cnn-mitdb-cv.png)\n"
    )
    if ds2 is None:
        ds2_section = "## DS2\n\nNot evaluated: an interim model written with `--no-test`.\n"
        return _markdown(model, args, card, timing, cv_section, ds2_section, "")
    plot_confusion(ds2["reference"], args.docs_dir / f"{NAME}-ds2.png", "DS2, reference beats")
    plot_confusion(
        ds2["end_to_end"], args.docs_dir / f"{NAME}-ds2-detected.png", "DS2, our detected beats"
    )
    qrs = ds2["end_to_end"]["qrs"]
    rest = without_232(ds2)
    all_classes = metrics_table(
        {"DS2, reference beats": ds2["reference"], "DS2, detected beats": ds2["end_to_end"]}
    )
    ds2_section = f"""## DS2 against published inter-patient results

This is DS2's read number {card["ds2_reads_for_beat_task"]} for the beat task. The first two
were of model 1.0.0 (code 8690f85: once by its training command, once by
`python -m inference.evaluate beats` to check it reproduced), the third of model 2.0.0 (code
1b24bbb), the fourth of model 3.0.0 (code fcfa617); their figures are the "previous model" rows
below. This model's recipe and epochs
were fixed on DS1 cross-validation (above) before DS2 was read, and nothing was changed
after. {args.ds2_note or ""}

{published_table(ds2)}
Targets (reference beats): {targets_note(ds2["reference"])}.

End to end, our QRS detector found {100 * qrs["se"]:.2f} % of the DS2 beats with
{100 * qrs["ppv"]:.2f} % of its detections real (150 ms); class figures on detected beats are on
the matched ones.

## All classes

{all_classes}
Without record 232 (whose atrial premature beats are three quarters of DS2's S beats), reference
beats: S Se {100 * rest["classes"]["S"]["se"]:.1f} / +P {100 * rest["classes"]["S"]["ppv"]:.1f}
/ F1 {rest["classes"]["S"]["f1"]:.2f}, V F1 {rest["classes"]["V"]["f1"]:.2f}, accuracy
{100 * rest["accuracy"]:.1f} % ({rest["n_beats"]} beats).

DS2 confusion matrix, reference beats (rows reference, columns predicted):

{confusion_table(ds2["reference"])}
![DS2 confusion matrix]({NAME}-ds2.png)

![DS2 confusion matrix, detected beats]({NAME}-ds2-detected.png)

Per-record DS2 figures are in `inference/weights/{NAME}.json` (`ds2_per_record`).
"""
    return _markdown(model, args, card, timing, cv_section, ds2_section, card_ending(NOTES_PATH))


def card_ending(notes_path: Path) -> str:
    """The card's end after its DS2 section: the hand-written notes at ``notes_path`` (without
    their first-line HTML comment) when the file exists, then the Limits paragraph."""
    notes = notes_path.read_text() if notes_path.exists() else ""
    if notes.startswith("<!--"):  # the file's own line saying it is hand-written
        notes = notes.partition("\n")[2]
    notes = notes.strip()
    return (
        (f"{notes}\n\n" if notes else "")
        + """
Limits: single lead (MLII); 22 training patients from a 1970s Holter database; F and Q have few
training beats; not validated prospectively. Research software, not a medical device. Data:
Moody GB, Mark RG (2001); Goldberger AL et al. (2000), PhysioNet.
"""
    )


def _markdown(model, args, card, timing, cv_section, ds2_section, pictures):
    synthetic = (
        "no synthetic beats"
        if not args.synthetic_premature
        else f"{args.synthetic_premature:.0%} of the regular-rhythm N beats of each batch made "
        "premature (pre-RR 50-85 %, longer post-RR) and labelled S (an AAMI S beat is a "
        "normal-looking beat that comes early; DS1 has few isolated ones: `make_premature`)"
    )
    if args.synthetic_premature_runs:
        runs = (
            f"{args.synthetic_premature_runs:.0%} of the regular-rhythm N beats of each batch "
            "made beats inside runs of premature beats (pre-RR 50-85 % of the sinus interval, "
            "the local RR moved toward it, post-RR the run's next interval or a pause) and "
            "labelled S (early against the average RR but not the local one, as in atrial runs "
            "and bigeminy: `make_premature_runs`)"
        )
        synthetic = f"{synthetic}; {runs}" if args.synthetic_premature else runs
    channels = (
        "the beat and the beat minus the patient's dominant beat (median of the preceding 64 "
        "beats, refreshed every 32), both divided by the dominant beat's amplitude"
        if args.difference_channel
        else "the beat divided by the patient's dominant beat's amplitude (median of the "
        "preceding 64 beats, refreshed every 32); no beat-minus-dominant channel"
    )
    fold = (
        "\n- **Rhythm rule**: no beat is S where the rhythm looks like atrial fibrillation "
        "(irregular RR over the last 64 beats and no consistent P wave, `inference.atrial`): "
        "its probability goes to N, as AAMI labels every beat of AF N."
        if args.fold_s_in_af
        else ""
    )
    classes = "`inference.beats.BeatNet`" + ("" if args.members == 1 else " x `BeatEnsemble`")
    if args.members == 1:
        seeds, what = f"seed {args.seed}", "a small CNN"
    else:
        last = args.seed + args.members - 1
        seeds = f"seeds {args.seed} to {last}"
        what = f"the mean probability of {args.members} small CNNs (seeds {args.seed} to {last})"
    return f"""# Model card: {NAME}

AAMI beat classifier (N, S, V, F, Q): {what} on each beat's morphology fused with an MLP
on its rhythm features, {count_parameters(model):,} parameters ({classes}).
Saliency: gradient x input of the predicted class's logit on the beat's window.

- **Input**: lead MLII in mV at any rate from 100 to 2000 Hz, band-passed 0.5-40 Hz, read at
  180 Hz from {WINDOW_BEFORE_S} s before to {WINDOW_AFTER_S} s after the R peak; {channels}.
  Rhythm (de Chazal 2004's RR features, normalised to the patient's own RR as in Mar 2011 and
  Lin & Yang 2014): pre- and post-RR in s; their ratios to the patient's average RR (mean
  of the last 5 min, pauses included, as de Chazal's) and to the local RR (median of the last
  10 intervals, pauses over twice the average excluded); local/average; pre/post; RR
  irregularity; correlation and amplitude ratio with the dominant beat. Causal except one
  beat of lookahead (post-RR).{fold}
- **Data and split**: MIT-BIH Arrhythmia Database, inter-patient (de Chazal 2004): trained on
  all 22 DS1 patients; recipe and epochs chosen by cross-validation over DS1 patients (below);
  DS2 (22 other patients) read once for this model. Paced records excluded.
- **Recipe**: Adam {args.learning_rate} with a cosine decay planned over {args.epochs} epochs,
  stopped after epoch {args.stop_epoch or args.epochs} (the one cross-validation chose),
  batch {args.batch_size}, cross-entropy with class weights (n / n_class)^{args.weight_power}
  (F weight x {args.f_weight_scale}: DS1's F beats are nearly all one patient's, 208),
  augmentation {card["recipe"]["augmentation"]}, dropout
  {args.morphology_dropout} on the CNN's features; {synthetic}; {seeds};
  {timing["cpu_s"]:.0f} s of CPU time ({timing["wall_s"]:.0f} s wall, {torch.get_num_threads()}
  thread).

Reproduce: `{card["command"]}` (trained {card["date"]}, code {card["code_commit"]}); evaluate
again with `python -m inference.evaluate beats --data DIR/mitdb --records ds2 --json OUT`.

{cv_section}
{ds2_section}
{pictures}"""


def reproduce_command(args: argparse.Namespace) -> str:
    return (
        f"python -m inference.beat_training --seed {args.seed} --epochs {args.epochs} "
        f"--stop-epoch {args.stop_epoch or args.epochs} --members {args.members} "
        f"--batch-size {args.batch_size} --learning-rate {args.learning_rate} "
        f"--weight-decay {args.weight_decay} --weight-power {args.weight_power} "
        f"--morphology-dropout {args.morphology_dropout} "
        f"--synthetic-premature {args.synthetic_premature} --f-weight-scale {args.f_weight_scale}"
        + (
            f" --synthetic-premature-runs {args.synthetic_premature_runs}"
            if args.synthetic_premature_runs
            else ""
        )
        + (
            f" --synthetic-s-p-wave {args.synthetic_s_p_wave}"
            if args.synthetic_s_p_wave != "keep"
            else ""
        )
        + (" --augment" if args.augment else " --no-augment")
        + (" --difference-channel" if args.difference_channel else " --no-difference-channel")
        + (" --fold-s-in-af" if args.fold_s_in_af else " --no-fold-s-in-af")
        + f" --ds2-evaluations {args.ds2_evaluations} --cv-results "
        + " ".join(args.cv_results or [])
        + (f" --cv-chosen {shlex.quote(args.cv_chosen)}" if args.cv_chosen else "")
        + (f" --choice-note {shlex.quote(args.choice_note)}" if args.choice_note else "")
        + (f" --ds2-note {shlex.quote(args.ds2_note)}" if args.ds2_note else "")
    )


# --- Command ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.beat_training", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--data", help="PhysioNet data folder (default $CARDIOSPIKE_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--stop-epoch",
        type=int,
        help="stop after this epoch of the --epochs schedule (the one cross-validation chose)",
    )
    parser.add_argument(
        "--members",
        type=int,
        default=1,
        help="final run: train this many networks (seeds seed, seed+1, ...) and ship their mean",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument(
        "--weight-power", type=float, default=0.5, help="class weights (n / n_class) ** this"
    )
    parser.add_argument(
        "--f-weight-scale", type=float, default=0.2, help="multiplies the F class's loss weight"
    )
    parser.add_argument(
        "--synthetic-premature",
        type=float,
        default=0.1,
        help="share of regular N beats made premature and labelled S in training",
    )
    parser.add_argument(
        "--synthetic-premature-runs",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of regular N beats made beats inside runs of premature beats (early "
        "against the average RR, not the local one) and labelled S in training",
    )
    parser.add_argument(
        "--p-wave-feature",
        nargs="?",
        const="nan-unknown",
        choices=P_WAVE_ENCODINGS,
        metavar="ENCODING",
        help="with --cv only (an experiment): give the network each beat's P-wave correlation "
        "with its dominant beat (unknown as 0, plus a 0/1 'unknown' column) after the rhythm "
        "features, and the synthetic S beats a P-wave correlation drawn from the training "
        "folds' real S beats; ENCODING nan-unknown (the default: unknown where NaN), "
        "flat-unknown (also where the dominant beat's P stretch is flat) or gated "
        "(flat-unknown's, but only a learned term that moves the N/S split reads the P wave, "
        "none where it is unknown); refused otherwise, "
        "as the served classifier does not take the P wave as an input yet",
    )
    parser.add_argument(
        "--rate-run-feature",
        action="store_true",
        help="cross-validation experiment: add how many beats before each one kept its rate",
    )
    parser.add_argument(
        "--future-rr-feature",
        action="store_true",
        help="cross-validation experiment: add the median RR of the 10 intervals after the beat",
    )
    parser.add_argument(
        "--second-lead",
        action="store_true",
        help="cross-validation experiment: give the network the record's other lead (V1 in "
        "most records) as a second input channel",
    )
    parser.add_argument(
        "--synthetic-s-p-wave",
        choices=SYNTHETIC_S_P_WAVES,
        default="keep",
        help="the synthetic S beats keep their own (sinus) P wave, or take a real S beat's (donor)",
    )
    parser.add_argument(
        "--morphology-dropout", type=float, default=0.3, help="dropout on the CNN's features"
    )
    parser.add_argument(
        "--difference-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give the CNN the beat minus the dominant beat as a second channel",
    )
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="augment training beats (amplitude, noise, R-peak jitter)",
    )
    parser.add_argument(
        "--fold-s-in-af",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="no beat is S where the rhythm looks like AF (inference.atrial), in cross-"
        "validation and in the shipped model's card",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cache", help="folder to cache per-record features in (tuning)")
    parser.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="K",
        help="tuning: K-fold leave-patients-out cross-validation over DS1; no DS2, no model",
    )
    parser.add_argument(
        "--model",
        choices=("cnn", "hgb", "logreg"),
        default="cnn",
        help="with --cv: the network or a baseline (gradient boosting, logistic regression)",
    )
    parser.add_argument("--fold-seed", type=int, default=0, help="with --cv: patient shuffle")
    parser.add_argument(
        "--cv-out", help="with --cv: save the held-out probabilities here (.npz), to combine"
    )
    parser.add_argument(
        "--cv-json", help="with --cv or --cv-combine: write the run's summary here, for the card"
    )
    parser.add_argument("--cv-label", help="with --cv-json: the candidate's name in the card")
    parser.add_argument(
        "--cv-results",
        nargs="*",
        metavar="JSON",
        help="final run: the --cv-json summaries of the candidates, tabled in the card (the best "
        "mean S/V F1 is marked as chosen)",
    )
    parser.add_argument(
        "--cv-chosen", help="final run: the label of the shipped candidate, if not the best"
    )
    parser.add_argument("--choice-note", help="final run: why that candidate, for the card")
    parser.add_argument(
        "--ds2-note",
        help="final run: what the choice knew of DS2 (earlier reads), said in the card; "
        "without it the card says DS2 played no part",
    )
    parser.add_argument(
        "--cv-combine",
        nargs="+",
        metavar="NPZ",
        help="score the mean of several saved --cv-out runs (a seed ensemble) and exit",
    )
    parser.add_argument(
        "--ds2-evaluations",
        type=int,
        default=1,
        help="how many times DS2 has been read for the beat task, for the card's honesty",
    )
    parser.add_argument(
        "--no-test",
        action="store_true",
        help="write an interim model and card without evaluating DS2",
    )
    # the final run's (and --no-test's) weights, card and pictures; --cv writes none of them
    add_output_options(parser, NAME)
    args = parser.parse_args(argv)
    args.weights_dir, args.docs_dir = run_dirs(args.out_dir, args.replace_shipped, NAME)
    if args.p_wave_feature and not (args.cv or args.cv_combine):
        parser.error(P_WAVE_REFUSAL)
    if args.rate_run_feature and not (args.cv or args.cv_combine):
        parser.error(
            "--rate-run-feature is a cross-validation experiment; the served classifier "
            "does not take it"
        )
    if args.rate_run_feature and args.p_wave_feature:
        parser.error("--rate-run-feature and --p-wave-feature cannot be combined")
    if args.future_rr_feature and not (args.cv or args.cv_combine):
        parser.error(
            "--future-rr-feature is a cross-validation experiment; the served classifier "
            "does not take it"
        )
    if args.future_rr_feature and (args.rate_run_feature or args.p_wave_feature):
        parser.error("--future-rr-feature cannot be combined with the other feature experiments")
    if args.second_lead and not (args.cv or args.cv_combine):
        parser.error(SECOND_LEAD_REFUSAL)
    if args.second_lead and (args.model != "cnn" or args.synthetic_s_p_wave != "keep"):
        # the baselines read MLII's window only; a donor P wave would change MLII's alone
        parser.error("--second-lead is for the network, without --synthetic-s-p-wave")
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    # outputs and data checked before the minutes of training, not after them
    writable_output(args.cv_json)
    if args.cv_out:
        writable_output(numpy_archive_path(args.cv_out))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.cv_combine:
        return combine_cv(args.cv_combine, args)
    # the final run reads DS2 once at the end: its records must be there before DS1 is trained
    mitdb = mitdb_folder(args.data, list(DS1) if args.cv or args.no_test else [*DS1, *DS2])
    cache = Path(args.cache) if args.cache else None
    data = load_set(mitdb, list(DS1), cache, second_lead=args.second_lead)
    counts = np.bincount(data["labels"], minlength=len(BEAT_CLASSES))
    print("DS1 beats per class:", dict(zip(BEAT_CLASSES, counts.tolist(), strict=True)))
    if args.cv:
        started = time.perf_counter()
        if args.p_wave_feature:
            data = with_p_wave_feature(data, args.p_wave_feature in FLAT_UNKNOWN_ENCODINGS)
        if args.rate_run_feature:
            data = with_rate_run_feature(data)
        if args.future_rr_feature:
            data = with_future_rr_feature(data)
        if args.second_lead:
            data = with_second_lead(data)
        result = cross_validate(data, args)
        rows = cv_report(data["labels"], result["probabilities"])
        for row in rows:
            print(
                f"step {row['epoch']:2d}: acc {row['accuracy']:.4f} S F1 {row['s_f1']:.3f} "
                f"V F1 {row['v_f1']:.3f} mean {row['score']:.3f}"
            )
        best = max(rows, key=lambda row: row["score"])
        print(f"folds: {result['folds']}; {time.perf_counter() - started:.0f} s")
        print(metrics_table({f"DS1 CV, {args.model}, step {best['epoch']}": best["metrics"]}))
        print(confusion_table(best["metrics"]))
        if args.cv_json:
            summary = cv_summary(
                rows,
                result["folds"],
                args.cv_label or args.model,
                "python -m "
                + shlex.join(
                    ["inference.beat_training", *(argv if argv is not None else sys.argv[1:])]
                ),
            )
            Path(args.cv_json).write_text(json_text(summary))
        if args.cv_out:
            np.savez_compressed(
                args.cv_out,
                probabilities=result["probabilities"],
                labels=data["labels"],
                record=data["record"],
                folds=json.dumps(result["folds"]),
            )
        return 0

    cv_runs = [json.loads(Path(path).read_text()) for path in args.cv_results or []]
    if cv_runs:
        best = max(cv_runs, key=lambda run: selection_score(run["best"]))
        if args.cv_chosen:
            best = next((run for run in cv_runs if run["label"] == args.cv_chosen), None)
            if best is None:
                raise ValueError(f"--cv-chosen {args.cv_chosen!r} is none of the --cv-results")
        for run in cv_runs:
            run["chosen"] = run is best
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    networks, history = [], []
    for member in range(args.members):
        # a seed ensemble: member i is the recipe with seed + i (the CV runs' seeds)
        member_args = argparse.Namespace(**{**vars(args), "seed": args.seed + member})
        torch.manual_seed(member_args.seed)
        network = BeatNet(
            morphology_dropout=args.morphology_dropout, difference_channel=args.difference_channel
        )
        history += [{"member": member, **row} for row in fit(network, data, member_args)]
        networks.append(network)
    if args.members == 1:
        model: nn.Module = networks[0]
    else:
        model = BeatEnsemble(args.members, difference_channel=args.difference_channel)
        for slot, network in zip(model.members, networks, strict=True):
            slot.load_state_dict(network.state_dict())
    timing = {
        "cpu_s": time.process_time() - started_cpu,
        "wall_s": time.perf_counter() - started_wall,
        "class_weights": class_weights(data["labels"], args.weight_power, args.f_weight_scale),
    }
    model.eval()
    if args.no_test:
        write_model(model, args, history, {"ds2": None}, timing, cv_runs)
        return 0
    # DS2: read once, here, for the final report, with the evaluation command's own code.
    card = {
        "name": NAME,
        "version": f"{MODEL_VERSION}.{args.seed}",
        "weights": f"{NAME}.pt",
        "difference_channel": args.difference_channel,
        "fold_s_in_af": args.fold_s_in_af,
    }
    classifier = BeatClassifier(card, state=model.state_dict())
    ds2 = evaluate_records(classifier, mitdb, list(DS2))
    print(metrics_table({"DS2 reference": ds2["reference"], "DS2 detected": ds2["end_to_end"]}))
    write_model(model, args, history, {"ds2": ds2}, timing, cv_runs)
    return 0


def numpy_archive_path(path: str) -> str:
    """The file ``np.savez_compressed(path, ...)`` writes: numpy adds ``.npz`` when missing."""
    return path if path.endswith(".npz") else f"{path}.npz"


def combine_cv(paths: list[str], args: argparse.Namespace) -> int:
    """Score the mean held-out probabilities of several saved cross-validation runs."""
    runs = [np.load(path) for path in paths]
    labels = runs[0]["labels"]
    if any(not np.array_equal(run["labels"], labels) for run in runs):
        raise ValueError("the runs to combine were not made on the same beats")
    steps = min(len(run["probabilities"]) for run in runs)
    mean = np.mean([run["probabilities"][:steps] for run in runs], axis=0)
    rows = cv_report(labels, mean)
    for row in rows:
        print(
            f"step {row['epoch']:2d}: acc {row['accuracy']:.4f} S F1 {row['s_f1']:.3f} "
            f"V F1 {row['v_f1']:.3f} mean {row['score']:.3f}"
        )
    if args.cv_json:
        folds = json.loads(str(runs[0]["folds"])) if "folds" in runs[0].files else []
        command = "python -m inference.beat_training --cv-combine " + " ".join(paths)
        summary = cv_summary(rows, folds, args.cv_label or "ensemble", command)
        Path(args.cv_json).write_text(json_text(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
