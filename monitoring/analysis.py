"""Batch analysis of a stored recording: beats, labels, episodes, summary, agreement.

:func:`analyze_recording` is what the Celery task ``analyze_recording_task`` runs (tests call
it directly). It computes everything first (``inference.analysis``: no database involved),
then writes the beats, episodes, summary and agreement in one transaction that also marks
the recording done; a failure marks it failed with the error and stores no result at all.
Running it again replaces the results in one transaction, so a repeated or redelivered task
never duplicates beats.

A recording has results only while its analysis is done: queuing an analysis, and its
failure, clear the previous beats, episodes, summary and agreement, so that no page or
endpoint shows an old run's results beside a new status. A worker killed in the middle of
an analysis takes its task with it (Celery acknowledges it: docs/upload.md says why it is not
redelivered); :func:`fail_stale_analyses`, run by the periodic sweep, fails an analysis left
pending for longer than ``UPLOAD_ANALYSIS_STALE_S``, so that a person can run it again.
"""

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from inference.aami import AAMI_CLASSES
from inference.beat_match import match_beats
from inference.beat_rows import ROW_LAYOUTS
from monitoring.models import (
    BEAT_ROW_FORMATS,
    AnalysisStatus,
    Beat,
    Episode,
    Recording,
)

logger = logging.getLogger(__name__)

ROWS_NOTE = (
    "Beat rows have no rhythm context (no time between beats), so there is no heart rate "
    "and no rhythm episodes; each row is classified on its shape alone."
)
# A beatless analysed lead whose robust peak-to-peak (1st to 99th percentile) is below this is
# flat or nearly so, as the live poor-signal alarm reads it (monitoring.alarms): asystole, a
# lead that was off, or a file not in millivolts (a file in volts reads 1000 times too small).
NO_BEATS_FLAT_PP_MV = 0.5
# Beat-detection Se or +P against an upload's own annotations below this is not a detector
# that is a little off (ours scores above 0.95 on MIT-BIH) but annotations that do not fit the
# signal: MIT-BIH 208.atr uploaded as 119.atr gives Se 0.34. An annotation file carries no
# record name or checksum, so this is the only sign of it.
POOR_QRS_AGREEMENT = 0.5
CSV_COLUMNS_PROBABILITIES = [f"p_{name}" for name in AAMI_CLASSES]


class AnalysisError(ValueError):
    """A recording this analysis cannot read, with a message written for the user (shown on
    the page and in the API as it is; any other exception is shown only by its class)."""


# --- Reading stored samples -------------------------------------------------------------


def recording_adc(recording: Recording) -> np.ndarray:
    """All stored samples of a recording, int16 (n_samples, n_channels), from sample 0.

    Raises ``AnalysisError`` (a ``ValueError``) when the chunks leave a gap: a batch analysis
    needs the whole signal (uploads never have gaps; device streams are analysed incrementally
    elsewhere).
    """
    parts, expected = [], 0
    for chunk in recording.chunks.order_by("first_sample").only(
        "first_sample", "n_samples", "data", "recording_id"
    ):
        chunk.recording = recording  # the decoder needs the channel count
        if chunk.first_sample != expected:
            raise AnalysisError(
                f"recording {recording.pk} has a gap: samples {expected}-{chunk.first_sample - 1} "
                "are missing"
            )
        parts.append(chunk.samples())
        expected = chunk.end_sample
    if not parts:
        raise AnalysisError(f"recording {recording.pk} has no stored samples")
    return np.concatenate(parts)


def recording_signal_mv(recording: Recording, channel: int | None = None) -> np.ndarray:
    """One channel in millivolts (float64); the analysed channel unless told otherwise."""
    channel = recording.analysis_lead if channel is None else channel
    return recording.to_mv(recording_adc(recording)[:, channel])


def beat_rows(recording: Recording) -> np.ndarray:
    """The rows of a beat-per-row upload, shape (n_rows, row length), in their own units."""
    length = ROW_LAYOUTS[recording.upload_format].n_samples
    return recording_signal_mv(recording).reshape(-1, length)


# --- Agreement with the file's labels ---------------------------------------------------


def agreement(
    reference: Sequence[str],
    predicted: Sequence[str],
    missed: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> dict:
    """Per-class Se/+P/F1 and the confusion table of our labels against the file's.

    ``reference`` and ``predicted`` are the labels of matched beats, pairwise. ``missed``
    are the reference labels of beats we did not detect, ``extra`` our labels of detections
    with no reference beat: both count against the class (a missed V beat lowers V's Se, an
    extra beat labelled N lowers N's +P), as in an end-to-end AAMI EC57 evaluation. Undefined
    ratios (no such beats) are ``None``.
    """
    index = {name: i for i, name in enumerate(AAMI_CLASSES)}
    confusion = np.zeros((len(AAMI_CLASSES), len(AAMI_CLASSES)), dtype=np.int64)
    for ref, pred in zip(reference, predicted, strict=True):
        confusion[index[ref], index[pred]] += 1
    missed_counts = {name: 0 for name in AAMI_CLASSES} | _counts(missed)
    extra_counts = {name: 0 for name in AAMI_CLASSES} | _counts(extra)
    classes = {}
    for name, i in index.items():
        tp = int(confusion[i, i])
        support = int(confusion[i].sum()) + missed_counts[name]
        n_predicted = int(confusion[:, i].sum()) + extra_counts[name]
        se = tp / support if support else None
        ppv = tp / n_predicted if n_predicted else None
        f1 = 2 * se * ppv / (se + ppv) if se and ppv else (0.0 if support else None)
        classes[name] = {
            "se": se,
            "ppv": ppv,
            "f1": f1,
            "support": support,
            "predicted": n_predicted,
        }
    n_matched = int(confusion.sum())
    return {
        "labels": list(AAMI_CLASSES),
        "confusion": confusion.tolist(),
        "classes": classes,
        "n_matched": n_matched,
        "accuracy": float(np.trace(confusion) / n_matched) if n_matched else None,
        "missed": missed_counts,
        "extra": extra_counts,
    }


def _counts(labels: Sequence[str]) -> dict[str, int]:
    counts = {name: 0 for name in AAMI_CLASSES}
    for label in labels:
        counts[label] += 1
    return counts


# --- The analysis -----------------------------------------------------------------------


def analyze_recording(recording_id: int, force: bool = False) -> dict:
    """Analyse a stored recording and store the results; returns the analysis status.

    A recording already analysed is left as it is unless ``force``. Never raises for a
    failed analysis: the recording is marked failed, with no result, and the return value
    says so. The exception itself goes to the log: its text may name server paths or
    addresses, so users see it only when it is an :class:`AnalysisError` (a message written
    for them), and otherwise only its class.
    """
    recording = Recording.objects.get(pk=recording_id)
    if recording.analysis_status == AnalysisStatus.DONE and not force:
        return _status(recording)
    try:
        if recording.upload_format in BEAT_ROW_FORMATS:
            result = _analyze_rows(recording)
        else:
            result = _analyze_signal(recording)
        _store(recording, *result)
    except AnalysisError as exc:
        logger.warning("analysis of recording %s refused: %s", recording_id, exc)
        _mark_failed(recording_id, str(exc))
    except Exception as exc:
        logger.exception("analysis of recording %s failed", recording_id)
        _mark_failed(
            recording_id,
            f"an internal error ({type(exc).__name__}) stopped it; the details are in the "
            "server log. Analyse again; if it fails again, tell the administrator.",
        )
    return _status(Recording.objects.get(pk=recording_id))


def queue_analysis(recording_id: int, force: bool = False) -> bool:
    """Hand the analysis to the task queue (run eagerly when there is no broker); returns
    whether it was queued.

    Refused (``False``, nothing changed) while an analysis of the recording is already
    pending and not stale (``UPLOAD_ANALYSIS_STALE_S``): a second run would only replace the
    first's results with the same ones, twice the work for the workers. An upload whose
    analysis was never queued (``analysis_queued_at`` unset: the upload's own first queuing)
    is queued. The check and the change are one conditional UPDATE, so two clicks at the
    same moment queue one analysis, not two: the database lets one UPDATE match the row, and
    the other, re-reading it once the first commits, finds it pending and fresh.

    The previous results are cleared first: while the new analysis is pending, and if it
    fails, there is nothing to mistake for its result. A queue that cannot take the task
    (broker down) marks the recording failed, instead of leaving it pending for ever;
    "Analyse again" retries it.
    """
    from monitoring.tasks import analyze_recording_task

    now = timezone.now()
    queueable = (
        ~Q(analysis_status=AnalysisStatus.PENDING)
        | Q(analysis_queued_at__isnull=True)
        | Q(analysis_queued_at__lt=_stale_before(now))
    )
    with transaction.atomic():
        # The UPDATE locks the row, as _store's and _mark_failed's select_for_update do: a
        # worker storing a result right now finishes first, and its result is then cleared
        # with the rest.
        queued = (
            Recording.objects.filter(queueable, pk=recording_id).update(
                analysis_status=AnalysisStatus.PENDING,
                analysis_error="",
                analysis_queued_at=now,
            )
            == 1
        )
        if not queued:
            return False
        _clear_results(recording_id)
    try:
        analyze_recording_task.delay(recording_id, force)
    except Exception as exc:
        logger.exception("could not queue the analysis of recording %s", recording_id)
        # the broker's message names its address: the log has it, the page the class
        _mark_failed(
            recording_id,
            f"could not queue the analysis ({type(exc).__name__}): the task queue did not "
            "take it. Analyse again later.",
        )
    return True


def analysis_pending_message(recording: Recording) -> str:
    """Why "Analyse again" was refused: an analysis is pending and not stale yet."""
    minutes = settings.UPLOAD_ANALYSIS_STALE_S / 60
    return (
        f"the analysis of recording {recording.pk} is already pending (queued or running): "
        "wait for its results. It can be run again once it is done or has failed, or once it "
        f"has been pending for over {minutes:g} minutes (its worker has then most likely "
        "stopped)."
    )


def analysis_is_stale(recording: Recording, now: datetime | None = None) -> bool:
    """Whether a pending analysis has waited longer than any analysis takes
    (``UPLOAD_ANALYSIS_STALE_S``): its worker has most likely stopped, and the page offers
    to run it again before the periodic sweep marks it failed."""
    if recording.analysis_status != AnalysisStatus.PENDING:
        return False
    since = recording.analysis_queued_at or recording.created_at
    return since < _stale_before(now)


def fail_stale_analyses(now: datetime | None = None) -> list[int]:
    """Mark failed every upload whose analysis has been pending (queued or running) for
    longer than ``UPLOAD_ANALYSIS_STALE_S``; returns their ids.

    Nothing else would: a worker killed mid-task loses the task (docs/upload.md), and the
    page would say "Pending" for ever. A worker that does finish later still stores its
    result (the task runs whenever the status is not done), so a slow analysis failed here by
    mistake corrects itself.
    """
    cutoff = _stale_before(now)
    # before the on-commit queue_analysis of a new upload, analysis_queued_at is not set
    # yet: its creation time counts then (a server that died in between leaves it so)
    stale = (
        Recording.objects.exclude(upload_format="")
        .filter(analysis_status=AnalysisStatus.PENDING)
        .annotate(since=Coalesce("analysis_queued_at", "created_at"))
        .filter(since__lt=cutoff)
        .values_list("pk", "analysis_queued_at")
    )
    minutes = settings.UPLOAD_ANALYSIS_STALE_S / 60
    failed = []
    for pk, queued_at in stale:
        # only if nobody queued it again meanwhile (a fresh "Analyse again")
        marked = Recording.objects.filter(
            pk=pk, analysis_status=AnalysisStatus.PENDING, analysis_queued_at=queued_at
        ).update(
            analysis_status=AnalysisStatus.FAILED,
            analysis_error=(
                f"it did not finish within {minutes:g} minutes; its worker stopped (or its "
                "task was lost). Analyse again."
            ),
            analyzed_at=timezone.now(),
        )
        if marked:
            logger.warning("the analysis of recording %s was left pending; marked failed", pk)
            failed.append(pk)
    return failed


def _stale_before(now: datetime | None) -> datetime:
    return (now or timezone.now()) - timedelta(seconds=settings.UPLOAD_ANALYSIS_STALE_S)


def _clear_results(recording_id: int) -> None:
    """Remove a recording's analysis results (call inside a transaction)."""
    Beat.objects.filter(recording_id=recording_id).delete()
    Episode.objects.filter(recording_id=recording_id).delete()
    Recording.objects.filter(pk=recording_id).update(analysis_summary={}, analysis_agreement=None)


@transaction.atomic
def _mark_failed(recording_id: int, message: str) -> None:
    """Failed, with ``message`` for the user and no result from this run or an earlier one."""
    Recording.objects.select_for_update().filter(pk=recording_id).first()
    _clear_results(recording_id)
    Recording.objects.filter(pk=recording_id).update(
        analysis_status=AnalysisStatus.FAILED,
        analysis_error=message[:2000],
        analyzed_at=timezone.now(),
    )


def _status(recording: Recording) -> dict:
    return {
        "recording": recording.pk,
        "status": recording.analysis_status,
        "error": recording.analysis_error,
        "n_beats": recording.analysis_summary.get("n_beats"),
    }


def _jsonable(value):
    """``value`` with numpy scalars and arrays turned into plain Python, for JSON fields.

    The inference package may hand back ``np.int64`` counts or arrays in summaries and
    episode details; the database's JSON encoder refuses them.
    """

    def default(item):
        if isinstance(item, np.generic):
            return item.item()
        if isinstance(item, np.ndarray):
            return item.tolist()
        raise TypeError(f"{type(item).__name__} is not JSON serializable")

    return json.loads(json.dumps(value, default=default))


def _probabilities(row: np.ndarray) -> dict[str, float]:
    return {name: round(float(p), 5) for name, p in zip(AAMI_CLASSES, row, strict=True)}


def _make_beats(
    recording: Recording,
    samples: np.ndarray,
    labels: Sequence[str],
    probabilities: np.ndarray,
    reference: dict[int, str],
    rows: bool,
    p_wave: np.ndarray | None = None,
) -> list[Beat]:
    column = {name: i for i, name in enumerate(AAMI_CLASSES)}
    p_waves = (
        [None] * len(samples) if p_wave is None else [Beat.stored_p_wave(value) for value in p_wave]
    )
    return [
        Beat(
            recording=recording,
            index=index,
            sample=int(sample),
            label=label,
            confidence=min(1.0, max(0.0, float(probabilities[index, column[label]]))),
            probabilities=_probabilities(probabilities[index]),
            reference_label=reference.get(index, ""),
            row=index + 1 if rows else None,
            p_wave=p_waves[index],
        )
        for index, (sample, label) in enumerate(zip(samples, labels, strict=True))
    ]


def _analyze_signal(recording: Recording) -> tuple[list[Beat], list[Episode], dict, dict | None]:
    from inference.analysis import analyze_signal

    fs = recording.sampling_rate_hz
    ecg_mv = recording_signal_mv(recording)
    result = analyze_signal(ecg_mv, fs)
    r_peaks = np.asarray(result.r_peaks, dtype=np.int64)
    # (n_beats, 5); named in full, since a beatless signal's (0, 5) cannot infer a -1 axis
    probabilities = np.asarray(result.probabilities, dtype=np.float64).reshape(
        len(r_peaks), len(AAMI_CLASSES)
    )
    matched_reference: dict[int, str] = {}
    agreement_result = None
    reference = recording.reference_annotations
    if reference and reference.get("samples") is not None:
        ref_samples = np.asarray(reference["samples"], dtype=np.int64)
        ref_labels = list(reference["labels"])
        ref_index, det_index = match_beats(ref_samples, r_peaks, fs)
        pairs = zip(ref_index, det_index, strict=True)
        matched_reference = {int(d): ref_labels[r] for r, d in pairs}
        missed = sorted(set(range(len(ref_labels))) - set(ref_index.tolist()))
        extra = sorted(set(range(len(r_peaks))) - set(det_index.tolist()))
        agreement_result = agreement(
            [ref_labels[r] for r in ref_index],
            [result.labels[d] for d in det_index],
            missed=[ref_labels[r] for r in missed],
            extra=[result.labels[d] for d in extra],
        )
        agreement_result["qrs"] = {
            "n_reference": len(ref_labels),
            "n_detected": len(r_peaks),
            "se": len(ref_index) / len(ref_labels) if ref_labels else None,
            "ppv": len(det_index) / len(r_peaks) if len(r_peaks) else None,
            "match_window_s": 0.150,
        }
        warning = poor_agreement_warning(agreement_result["qrs"])
        if warning:
            agreement_result["warning"] = warning
    beats = _make_beats(
        recording,
        r_peaks,
        result.labels,
        probabilities,
        matched_reference,
        rows=False,
        p_wave=result.p_wave,
    )
    episodes = [
        Episode(
            recording=recording,
            kind=episode.kind,
            start_s=float(episode.start_s),
            end_s=float(episode.end_s),
            details=_jsonable(dict(episode.details or {})),
        )
        for episode in result.episodes
    ]
    summary = dict(result.summary)
    summary["lead"] = recording.analysis_lead_name
    summary["models"] = result.models
    summary["rhythm_context"] = True
    if len(r_peaks) == 0:
        summary["note"] = no_beats_note(ecg_mv, recording.analysis_lead_name)
    return beats, episodes, _jsonable(summary), agreement_result


def poor_agreement_warning(qrs: dict) -> str | None:
    """The agreement's warning when our beats and the reference beats match poorly, else None.

    Not given when we found no beat at all: the summary's no-beats note says why, and a
    signal without beats says nothing about whether the annotations are the record's.
    """
    se, ppv = qrs["se"], qrs["ppv"]
    if se is None or ppv is None:
        return None
    if se >= POOR_QRS_AGREEMENT and ppv >= POOR_QRS_AGREEMENT:
        return None
    return (
        f"our beats and the annotations match poorly (Se {se:.2f}, +P {ppv:.2f}): the "
        "annotations may belong to another record or another time base"
    )


def no_beats_note(ecg_mv: np.ndarray, lead: str) -> str:
    """What the summary of an analysis that found no beat says, from the lead's amplitude.

    The analysis itself stands as ``python -m inference.analyze`` gives it: no beats, no
    heart rate, and the pause that spans the signal; the note says how to read that.
    """
    found = f"No beats were found in lead {lead}"
    if np.ptp(ecg_mv) == 0:
        return (
            f"{found}: the signal is flat (constant at {float(ecg_mv[0]):g} mV). Asystole, or a "
            "lead that was off or disconnected: check the recording."
        )
    pp_mv = float(np.percentile(ecg_mv, 99) - np.percentile(ecg_mv, 1))
    if pp_mv < NO_BEATS_FLAT_PP_MV:
        return (
            f"{found}: the signal spans only {pp_mv:.3g} mV peak to peak. Asystole, a lead "
            "that was off, or a file not in millivolts (a file in volts reads 1000 times too "
            "small): check the recording and its units."
        )
    return (
        f"{found} although the signal spans {pp_mv:.3g} mV peak to peak: noise, movement or "
        "a rhythm the QRS detector cannot follow (ventricular fibrillation is reported as an "
        "episode when detected). Check the strip."
    )


def _analyze_rows(recording: Recording) -> tuple[list[Beat], list[Episode], dict, dict | None]:
    from inference.analysis import classify_beat_rows

    layout = ROW_LAYOUTS[recording.upload_format]
    rows = beat_rows(recording)
    labels, probabilities = classify_beat_rows(rows, recording.upload_format)
    labels = list(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    samples = np.arange(len(rows), dtype=np.int64) * layout.n_samples + layout.r_index
    reference_labels = (recording.reference_annotations or {}).get("labels")
    reference = dict(enumerate(reference_labels)) if reference_labels else {}
    beats = _make_beats(recording, samples, labels, probabilities, reference, rows=True)
    counts = _counts(labels)
    summary = {
        "n_beats": len(labels),
        "n_rows": len(labels),
        "duration_s": None,
        "heart_rate_bpm": None,
        "counts": counts,
        "burden": {name: count / len(labels) for name, count in counts.items()},
        "episodes": None,
        "layout": recording.upload_format,
        "lead": recording.lead_names[0],
        "rhythm_context": False,
        "note": ROWS_NOTE,
    }
    agreement_result = agreement(reference_labels, labels) if reference_labels else None
    return beats, [], summary, agreement_result


@transaction.atomic
def _store(
    recording: Recording,
    beats: list[Beat],
    episodes: list[Episode],
    summary: dict,
    agreement_result: dict | None,
) -> None:
    # Lock the row so that two workers analysing the same recording write one after the
    # other; each replaces everything, so the last one's result stands, whole.
    Recording.objects.select_for_update().filter(pk=recording.pk).first()
    Beat.objects.filter(recording=recording).delete()
    Episode.objects.filter(recording=recording).delete()
    Beat.objects.bulk_create(beats, batch_size=2000)
    Episode.objects.bulk_create(episodes)
    Recording.objects.filter(pk=recording.pk).update(
        analysis_status=AnalysisStatus.DONE,
        analysis_error="",
        analysis_summary=summary,
        analysis_agreement=agreement_result,
        analyzed_at=timezone.now(),
    )


# --- Results as CSV ---------------------------------------------------------------------


def results_csv_rows(recording: Recording) -> Iterator[list]:
    """The per-beat (or per-row) results CSV, header first, as lists of cells."""
    rows = recording.upload_format in BEAT_ROW_FORMATS
    fs = recording.sampling_rate_hz
    if rows:
        yield ["row", "label", "confidence", *CSV_COLUMNS_PROBABILITIES, "reference_label"]
    else:
        yield [
            "beat",
            "sample",
            "time_s",
            "label",
            "confidence",
            *CSV_COLUMNS_PROBABILITIES,
            "reference_label",
        ]
    for beat in recording.beats.order_by("index").iterator(chunk_size=2000):
        probabilities = [beat.probabilities.get(name, "") for name in AAMI_CLASSES]
        if rows:
            yield [
                beat.row,
                beat.label,
                round(beat.confidence, 5),
                *probabilities,
                beat.reference_label,
            ]
        else:
            yield [
                beat.index + 1,
                beat.sample,
                round(beat.sample / fs, 4),
                beat.label,
                round(beat.confidence, 5),
                *probabilities,
                beat.reference_label,
            ]


def results_csv(recording: Recording) -> str:
    """The results CSV as text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(results_csv_rows(recording))
    return buffer.getvalue()
