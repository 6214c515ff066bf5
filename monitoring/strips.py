"""PNG pictures of a stored recording's strip: ECG on grid paper, beat labels, saliency heat.

Drawn with matplotlib's object API on the Agg canvas (no pyplot global state), so pictures
can be made from any request thread or worker.
"""

import io
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inference.beat_rows import ROW_LAYOUTS
from inference.beats import saliency_excerpt
from monitoring.analysis import beat_rows
from monitoring.models import BEAT_ROW_FORMATS, Beat, Recording
from monitoring.recordings import contiguous_stretch, end_sample, samples_mv

MAX_STRIP_S = 60.0
MIN_STRIP_S = 0.5
DEFAULT_STRIP_S = 10.0
LABEL_COLOURS = {"N": "#374151", "S": "#1d4ed8", "V": "#b91c1c", "F": "#7e22ce", "Q": "#92400e"}


@dataclass
class StripRequest:
    """A validated request for a strip: where it starts and ends (samples) and the beat."""

    start: int
    end: int
    beat: Beat | None


def strip_request(
    recording: Recording,
    start_s: str | float | None,
    length_s: str | float | None,
    beat_number: str | int | None,
) -> StripRequest:
    """Check the query of a strip picture; ``ValueError`` says what is wrong.

    ``beat_number`` counts from 1 (as the results table and CSV do). Without ``start_s``
    the strip is centred on the chosen beat, moved to keep its length near either end of
    the recording, or starts at 0; with both, the beat must lie in the strip.
    """
    fs = recording.sampling_rate_hz
    # where the recording ends, not how much is stored: after a gap the last seconds are
    # still that far from the start
    n_samples = end_sample(recording)
    duration_s = n_samples / fs
    length = seconds_parameter(length_s, "length_s", DEFAULT_STRIP_S)
    if not MIN_STRIP_S <= length <= MAX_STRIP_S:
        raise ValueError(
            f"length_s must be between {MIN_STRIP_S:g} and {MAX_STRIP_S:g} seconds, got {length:g}"
        )
    beat = None
    if beat_number not in (None, ""):
        try:
            number = int(beat_number)
        except (TypeError, ValueError):
            raise ValueError(f"beat must be a beat number (1, 2, …), got {beat_number!r}") from None
        beat = recording.beats.filter(index=number - 1).first()
        if beat is None:
            n_beats = recording.beats.count()
            raise ValueError(f"beat {number} does not exist: the recording has {n_beats} beats")
    if start_s in (None, "") and beat is not None:
        # Centred on the beat, then moved (not cut) to fit, as the alarm e-mail's strip is
        # (monitoring.notifications.alarm_strip_window): cut at the end instead, a beat 0.8 s
        # before it got 5.8 s of the 10 asked for. Only a recording shorter than the strip
        # gives a shorter one (all of it).
        first, end = fitted_window(
            int(round(beat.sample - length * fs / 2)), int(round(length * fs)), n_samples
        )
        return StripRequest(start=first, end=end, beat=beat)
    start = seconds_parameter(start_s, "start_s", 0.0)
    if not 0.0 <= start < duration_s:
        raise ValueError(
            f"start_s must be from 0 to {duration_s:.2f} s (the recording's length), got {start:g}"
        )
    # a start in the last half sample rounds to the end: draw the last sample, not nothing
    first = min(int(round(start * fs)), n_samples - 1)
    end = min(n_samples, first + int(round(length * fs)))
    if beat is not None and not first <= beat.sample < end:
        # Refused rather than drawn: the picture would be titled "saliency of beat n" with
        # neither the beat nor its overlay in it. Not moved to the beat either: a start the
        # user typed is kept as typed; leaving it out centres the strip on the beat.
        raise ValueError(
            f"beat {beat.index + 1} (at {beat.sample / fs:.2f} s) is not in the strip "
            f"{first / fs:.2f}-{end / fs:.2f} s: leave the start (start_s) empty to centre the "
            "strip on the beat, or choose a start that puts the beat in the strip"
        )
    return StripRequest(start=first, end=end, beat=beat)


def fitted_window(start: int, length_n: int, n_samples: int) -> tuple[int, int]:
    """Samples ``[start, end)`` of a window of ``length_n`` samples meant to start at ``start``,
    moved (not cut) to lie inside ``[0, n_samples)``; only a recording shorter than the window
    gives a shorter one (all of it). The strips centred on a beat and the alarm e-mail's
    strip (``monitoring.notifications.alarm_strip_window``) both keep their length so."""
    start = min(start, n_samples - length_n)  # past the end: move back
    start = max(0, start)  # before the start (or a short recording): move forward
    return start, min(n_samples, start + length_n)


def seconds_parameter(value, name: str, default: float) -> float:
    """A query parameter in seconds: ``default`` when absent, else a finite number (ValueError
    naming the parameter otherwise)."""
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number of seconds")
    return number


class SaliencyUnavailable(Exception):
    """The model cannot explain this beat; the message says why (HTTP 409)."""


def saliency(recording: Recording, beat: Beat) -> dict:
    """The saliency map of one stored beat (or row), with ``start`` in recording samples.

    A signal is read only around the beat: the samples ``inference.beats.saliency_excerpt``
    names (a few minutes), within the stretch stored without a gap that holds the beat, with
    that stretch's beats counted from its first. That is what the label came from: an upload
    is analysed whole (one stretch; the map equals one computed on the whole recording), a
    device stream afresh after each gap (``monitoring.streaming``). ``SaliencyUnavailable``
    when the model cannot run there.
    """
    from inference.analysis import beat_saliency, row_saliency

    if recording.upload_format in BEAT_ROW_FORMATS:
        rows = beat_rows(recording)
        result = dict(row_saliency(rows, recording.upload_format, beat.index))
        result["start"] = int(result.get("start", 0)) + beat.index * rows.shape[1]
        return result
    fs = recording.sampling_rate_hz
    number = beat.index + 1
    stretch = contiguous_stretch(recording, beat.sample)
    if stretch is None:
        raise SaliencyUnavailable(
            f"beat {number} lies in a gap: no signal is stored at sample {beat.sample}"
        )
    first, end = stretch
    # in the stretch's own samples from here on, as the analysis saw them
    in_stretch = recording.beats.filter(sample__gte=first, sample__lt=end).order_by("sample")
    peaks = np.fromiter(in_stretch.values_list("sample", flat=True), dtype=np.int64) - first
    index = int(np.searchsorted(peaks, beat.sample - first))
    start, stop = saliency_excerpt(peaks, fs, index, end - first)
    signal = samples_mv(recording, first + start, first + stop)
    try:
        result = dict(beat_saliency(signal, fs, peaks, index, first_sample=start))
    except ValueError as exc:  # e.g. a rate or a stretch the beat model does not take
        raise SaliencyUnavailable(f"beat {number} cannot be explained: {exc}") from None
    result["start"] = int(result["start"]) + first
    return result


def render_strip_png(recording: Recording, request: StripRequest) -> bytes:
    """The strip as a PNG: trace on ECG paper, beat labels, and the chosen beat's saliency."""
    fs = recording.sampling_rate_hz
    rows = recording.upload_format in BEAT_ROW_FORMATS
    # only the chunks in the strip, gaps as NaN (a device recording may have some)
    piece = samples_mv(recording, request.start, request.end)
    stored = np.isfinite(piece)
    t = (request.start + np.arange(len(piece))) / fs
    length_s = len(piece) / fs
    # about 25 mm/s paper (1 inch per second), within what a page can show
    figure = Figure(figsize=(min(30.0, max(6.0, length_s * 1.0)), 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    low, high = (
        (float(np.min(piece[stored])), float(np.max(piece[stored])))
        if stored.any()
        else (-1.0, 1.0)
    )
    margin = max(0.25 * (high - low), 0.2 if not rows else 0.05)
    ymin, ymax = low - margin, high + 2 * margin
    if not rows:
        _paper(axes, t[0], t[-1], ymin, ymax)
    if request.beat is not None:
        heat = saliency(recording, request.beat)
        values = np.asarray(heat["values"], dtype=np.float64)
        first = int(heat["start"])
        lo, hi = max(first, request.start), min(first + len(values), request.end)
        if hi > lo:
            axes.imshow(
                values[lo - first : hi - first][np.newaxis, :],
                cmap="YlOrRd",
                vmin=0.0,
                vmax=1.0,
                alpha=0.55,
                aspect="auto",
                extent=(lo / fs, hi / fs, ymin, ymax),
                interpolation="nearest",
                zorder=1,
            )
    axes.plot(t, piece, color="#111111", linewidth=0.9, zorder=3)
    _gaps(axes, t, stored, ymin, ymax)
    beats = recording.beats.filter(sample__gte=request.start, sample__lt=request.end)
    for beat in beats.order_by("index"):
        chosen = request.beat is not None and beat.pk == request.beat.pk
        axes.text(
            beat.sample / fs,
            high + margin,
            beat.label,
            ha="center",
            va="bottom",
            fontsize=10 if chosen else 8,
            fontweight="bold" if chosen else "normal",
            color=LABEL_COLOURS.get(beat.label, "#111111"),
            zorder=4,
        )
    if rows:
        length = ROW_LAYOUTS[recording.upload_format].n_samples
        for boundary in range((request.start // length + 1) * length, request.end, length):
            axes.axvline(boundary / fs, color="#9ca3af", linewidth=0.6, linestyle=":")
    # a little room on the left: a Kaggle row's R peak (and its label) is its first sample
    left = t[0] - (0.015 * length_s if rows else 0.0)
    axes.set_xlim(left, t[-1] if len(t) > 1 else t[0] + 1 / fs)
    axes.set_ylim(ymin, ymax)
    axes.set_xlabel("time (s)" if not rows else "time (s), rows laid end to end")
    axes.set_ylabel("mV" if recording.upload_format != "kaggle187" else "normalized")
    lead = recording.analysis_lead_name
    title = f"Recording {recording.pk} · {lead} · {t[0]:.2f}-{t[-1]:.2f} s"
    if request.beat is not None:
        title += f" · saliency of beat {request.beat.index + 1} ({request.beat.label})"
    # parse_math=False: a lead name such as "$\\foo$" (an upload's header) is text, not a formula
    # matplotlib should typeset (it raised, and the strip was a 500)
    axes.set_title(title, fontsize=9, loc="left", parse_math=False)
    return _png(figure)


def _paper(axes, t0: float, t1: float, ymin: float, ymax: float) -> None:
    """ECG paper: 0.04 s / 0.1 mV small squares, 0.2 s / 0.5 mV large squares."""
    # one line collection per grid level: a minute of paper is 1,500 vertical lines
    for step, colour, width in ((0.04, "#fbd5d5", 0.4), (0.2, "#f29c9c", 0.7)):
        xs = np.arange(np.floor(t0 / step) * step, t1 + step, step)
        axes.vlines(xs, ymin, ymax, colors=colour, linewidth=width, zorder=0)
    for step, colour, width in ((0.1, "#fbd5d5", 0.4), (0.5, "#f29c9c", 0.7)):
        ys = np.arange(np.floor(ymin / step) * step, ymax + step, step)
        axes.hlines(ys, t0, t1, colors=colour, linewidth=width, zorder=0)


def render_range_png(
    recording: Recording,
    start: int,
    end: int,
    marker_sample: int | None = None,
    title: str = "",
    channel: int | None = None,
) -> bytes:
    """A PNG of samples ``[start, end)`` of one channel (the analysed one unless told) on ECG
    paper with the stored beat labels.

    For live recordings (alarm emails) and the review page: reads only the chunks in the
    range, draws a range no chunk covers as a gap (the line breaks; nothing is interpolated),
    and marks ``marker_sample`` (the alarm's event) with a vertical line.
    """
    fs = recording.sampling_rate_hz
    channel = recording.analysis_lead if channel is None else channel
    piece = samples_mv(recording, start, end, channel=channel)
    t = (start + np.arange(len(piece))) / fs
    length_s = max(len(piece) / fs, 1 / fs)
    figure = Figure(figsize=(min(30.0, max(6.0, length_s * 1.0)), 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    stored = np.isfinite(piece)
    low, high = (
        (float(np.min(piece[stored])), float(np.max(piece[stored])))
        if stored.any()
        else (-1.0, 1.0)
    )
    margin = max(0.25 * (high - low), 0.2)
    ymin, ymax = low - margin, high + 2 * margin
    t0, t1 = start / fs, max(end - 1, start) / fs
    _paper(axes, t0, t1, ymin, ymax)
    # matplotlib breaks a line at NaN, which is exactly a gap
    axes.plot(t, piece, color="#111111", linewidth=0.9, zorder=3)
    _gaps(axes, t, stored, ymin, ymax)
    for sample, label in recording.beats.filter(sample__gte=start, sample__lt=end).values_list(
        "sample", "label"
    ):
        axes.text(
            sample / fs,
            high + margin,
            label,
            ha="center",
            va="bottom",
            fontsize=8,
            color=LABEL_COLOURS.get(label, "#111111"),
            zorder=4,
        )
    if marker_sample is not None and start <= marker_sample < end:
        axes.axvline(marker_sample / fs, color="#dc2626", linewidth=1.2, zorder=4)
    axes.set_xlim(t0, t1 if t1 > t0 else t0 + 1 / fs)
    axes.set_ylim(ymin, ymax)
    axes.set_xlabel("time from the start of the recording (s)")
    axes.set_ylabel("mV")
    lead = recording.lead_names[channel]
    heading = f"Recording {recording.pk} · {lead} · {t0:.1f}-{t1:.1f} s"
    axes.set_title(
        f"{heading} · {title}" if title else heading, fontsize=9, loc="left", parse_math=False
    )
    return _png(figure)


def _gaps(axes, t: np.ndarray, stored: np.ndarray, ymin: float, ymax: float) -> None:
    """A grey "no data" band over each run of samples not stored (``stored`` False)."""
    if stored.all():
        return
    missing = np.flatnonzero(~stored)
    breaks = np.flatnonzero(np.diff(missing) > 1)
    for first, last in zip(
        np.r_[missing[0], missing[breaks + 1]], np.r_[missing[breaks], missing[-1]], strict=True
    ):
        axes.axvspan(t[first], t[last], color="#e5e7eb", zorder=2)
        axes.text(
            (t[first] + t[last]) / 2,
            (ymin + ymax) / 2,
            "no data",
            ha="center",
            fontsize=8,
            color="#6b7280",
            zorder=4,
        )


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes, with the research-software notice every strip carries."""
    figure.text(
        0.99,
        0.01,
        "Research software, not a medical device",
        ha="right",
        fontsize=6,
        color="#6b7280",
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
