"""PNG pictures of a stored recording's strip: ECG on paper at a stated scale (25 mm/s, a gain
in mm/mV, a calibration pulse), beat labels, saliency heat.

Drawn with matplotlib's object API on the Agg canvas (no pyplot global state), so pictures
can be made from any request thread or worker.
"""

import io
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from inference.beat_rows import ROW_LAYOUTS
from inference.beats import saliency_excerpt
from monitoring.analysis import beat_rows
from monitoring.models import BEAT_ROW_FORMATS, Beat, Recording
from monitoring.recordings import contiguous_stretch, end_sample, lead_off_spans, samples_mv

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


# --- ECG paper ----------------------------------------------------------------------------
# The PNG strips are drawn as an ECG machine prints: 25 mm/s, 1 mm small and 5 mm large
# squares, a gain in mm/mV from the clinical steps, a 1 mV calibration pulse at the left of
# each row at that gain, and the scale written under the strip, so that intervals and
# amplitudes are read off the paper. Until 2026-12-07 the amplitude was scaled to fit each
# strip (1 mV measured 33-253 px at 100 dpi depending on the signal: a 1 mV and a 3 mV square
# wave came out the same height) and a 60-s strip ran at 12 mm/s. docs/review.md, "Scale".
PAPER_SPEED_MM_PER_S = 25.0
GAINS_MM_PER_MV = (20.0, 10.0, 5.0, 2.5)
# Without a gain asked for: 10 mm/mV, a smaller step only when the strip's signal does not fit
# a row at it (as an ECG machine's automatic gain); 20 mm/mV only when asked for.
AUTO_GAINS_MM_PER_MV = (10.0, 5.0, 2.5)
# 5 px a mm (127 dpi, which the PNG states): printed at its resolution the strip is true
# paper; on screen a small square is 5 px, a large one 25 px, 1 mV at 10 mm/mV 50 px.
PNG_PX_PER_MM = 5
MM_PER_INCH = 25.4
PNG_DPI = PNG_PX_PER_MM * MM_PER_INCH
# A strip longer than MAX_ONE_ROW_S is wrapped into rows of ROW_S (a 60-s strip: six rows of
# 10 s, each at 25 mm/s); up to it, one row (the alarm e-mail's 12 s).
ROW_S = 10.0
MAX_ONE_ROW_S = 15.0
ROW_PAPER_MM = 50.0  # the height of each row's paper: 5 mV at 10 mm/mV
ROW_MARGIN_MM = 2.0  # kept free above and below a signal that fits
LABEL_BAND_MM = 5.0  # beat labels, above each row's paper
TICK_BAND_MM = 5.0  # seconds, under each row's paper
TITLE_MM = 8.0
FOOTER_MM = 10.0
CAL_MM = 10.0  # paper at the left of each row, before the trace: the calibration pulse
LEFT_MM = 3.0 + CAL_MM  # where the trace starts
RIGHT_MM = 4.0
MIN_WIDTH_MM = 170.0  # room for the title and the scale under a short strip
TRACE_COLOUR = "#111111"
GAP_COLOUR = "#e5e7eb"
# as review.js: blue-grey over samples that are stored but no ECG, grey where none is stored
LEADS_OFF_COLOUR = (71 / 255, 85 / 255, 160 / 255, 0.22)
LEADS_OFF_TEXT = "#1e293b"


@dataclass
class PaperScale:
    """The gain a strip is drawn at, and whether its signal fits a row there (else it is
    clipped at the row's paper)."""

    gain_mm_per_mv: float
    fits: bool

    @property
    def label(self) -> str:
        """What the strip says under its rows: ``25 mm/s · 10 mm/mV``."""
        return f"{PAPER_SPEED_MM_PER_S:g} mm/s · {self.gain_mm_per_mv:g} mm/mV"


def gain_parameter(value) -> float | None:
    """The ``gain_mm_per_mv`` query parameter: None when absent (the strip chooses,
    ``paper_scale``), else one of ``GAINS_MM_PER_MV`` (``ValueError`` otherwise)."""
    if value in (None, ""):
        return None
    choices = ", ".join(f"{gain:g}" for gain in GAINS_MM_PER_MV)
    try:
        gain = float(value)
    except (TypeError, ValueError):
        gain = None
    if gain not in GAINS_MM_PER_MV:
        raise ValueError(f"gain_mm_per_mv must be one of {choices} (mm per mV), got {value!r}")
    return gain


def paper_scale(rows: list[np.ndarray], requested_mm_per_mv: float | None = None) -> PaperScale:
    """The gain of a strip whose rows hold ``rows`` (mV, NaN where nothing is stored): the one
    asked for, else the first of ``AUTO_GAINS_MM_PER_MV`` at which every row's signal (lowest
    to highest stored sample) fits its paper, or the smallest when none does."""
    usable_mm = ROW_PAPER_MM - 2 * ROW_MARGIN_MM
    spans_mv = [float(np.ptp(row[np.isfinite(row)])) for row in rows if np.isfinite(row).any()]

    def fits(gain: float) -> bool:
        return all(span * gain <= usable_mm for span in spans_mv)

    if requested_mm_per_mv is not None:
        return PaperScale(requested_mm_per_mv, fits(requested_mm_per_mv))
    for gain in AUTO_GAINS_MM_PER_MV:
        if fits(gain):
            return PaperScale(gain, True)
    return PaperScale(AUTO_GAINS_MM_PER_MV[-1], False)


def row_centre_mv(values: np.ndarray, gain_mm_per_mv: float) -> float:
    """The value drawn at the middle of a row's paper: the row's median (its baseline), moved
    just enough for the whole signal to fit when it can; a signal that cannot fit keeps its
    baseline in the middle and is clipped above and below."""
    stored = values[np.isfinite(values)]
    if not stored.size:
        return 0.0
    low, high, median = float(stored.min()), float(stored.max()), float(np.median(stored))
    half_mv = (ROW_PAPER_MM / 2 - ROW_MARGIN_MM) / gain_mm_per_mv
    if high - low <= 2 * half_mv:
        return min(max(median, high - half_mv), low + half_mv)
    return median


def strip_rows(n_samples: int, fs: float) -> list[tuple[int, int]]:
    """The rows ``[first, end)`` (indices into the strip's samples) a strip is wrapped into."""
    per_row = n_samples if n_samples <= MAX_ONE_ROW_S * fs else int(round(ROW_S * fs))
    return [(first, min(n_samples, first + per_row)) for first in range(0, n_samples, per_row)]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The runs ``[first, end)`` where ``mask`` is True."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


@dataclass
class StripMark:
    """A beat label above the trace (``chosen``: the beat explained, larger and bold)."""

    sample: int
    label: str
    chosen: bool = False


def draw_saliency(axes, values: np.ndarray, extent: tuple[float, float, float, float]) -> None:
    """The saliency heat (0-1) of ``values`` as a band behind the trace over ``extent``
    (left, right, bottom, top in the axes' units): the paper strips and the beat rows share it."""
    axes.imshow(
        values[np.newaxis, :],
        cmap="YlOrRd",
        vmin=0.0,
        vmax=1.0,
        alpha=0.55,
        aspect="auto",
        extent=extent,
        interpolation="nearest",
        zorder=1,
    )


def render_paper_png(
    recording: Recording,
    start: int,
    piece: np.ndarray,
    title: str,
    beats: list[StripMark],
    leads_off: list[list[int]],
    marker_sample: int | None = None,
    heat: tuple[int, np.ndarray] | None = None,
    gain_mm_per_mv: float | None = None,
) -> bytes:
    """``piece`` (mV from sample ``start``, NaN where nothing is stored) as a PNG on ECG paper:
    25 mm/s in rows of ``ROW_S`` when longer than ``MAX_ONE_ROW_S``, at ``gain_mm_per_mv`` or
    the gain ``paper_scale`` chooses, a calibration pulse at the left of each row, the scale
    under the rows (and in the PNG's ``Description``). Beat labels above the trace; gaps under
    a grey "no data" band, ``leads_off`` spans (samples, ``[start, end)``) under a blue-grey
    "Leads off" band, as the review page draws them; ``marker_sample`` as a red line;
    ``heat`` (first sample, values 0..1) shades the paper behind the trace.

    Drawn in paper coordinates (mm from the bottom left of the picture) on one axes that fills
    the figure, so that a mm is ``PNG_PX_PER_MM`` pixels wherever it is.
    """
    fs = recording.sampling_rate_hz
    rows = strip_rows(len(piece), fs) or [(0, 0)]
    scale = paper_scale([piece[first:end] for first, end in rows], gain_mm_per_mv)
    gain = scale.gain_mm_per_mv
    paper_mm = max(max(end - first for first, end in rows), 1) / fs * PAPER_SPEED_MM_PER_S
    width_mm = max(MIN_WIDTH_MM, LEFT_MM + paper_mm + RIGHT_MM)
    row_mm = LABEL_BAND_MM + ROW_PAPER_MM + TICK_BAND_MM
    height_mm = TITLE_MM + len(rows) * row_mm + FOOTER_MM
    figure = Figure(figsize=(width_mm / MM_PER_INCH, height_mm / MM_PER_INCH), dpi=PNG_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_axis_off()
    axes.set_autoscale_on(False)
    axes.set_xlim(0.0, width_mm)
    axes.set_ylim(0.0, height_mm)
    # parse_math=False: a lead name such as "$\\foo$" (an upload's header) is text, not a
    # formula matplotlib should typeset (it raised, and the strip was a 500)
    axes.text(
        LEFT_MM - CAL_MM,
        height_mm - TITLE_MM / 2,
        title,
        va="center",
        fontsize=9,
        parse_math=False,
    )
    for number, (first, end) in enumerate(rows):
        bottom = height_mm - TITLE_MM - number * row_mm - LABEL_BAND_MM - ROW_PAPER_MM
        _draw_row(
            axes,
            recording,
            start + first,
            piece[first:end],
            bottom,
            paper_mm,
            gain,
            beats,
            leads_off,
            marker_sample,
            heat,
        )
    note = scale.label
    if not scale.fits:
        note += " · the signal is taller than a row at this gain: clipped at its edges"
    axes.text(LEFT_MM - CAL_MM, FOOTER_MM - 3.5, note, va="center", fontsize=8, weight="bold")
    axes.text(
        LEFT_MM - CAL_MM,
        2.0,
        "Time under each row: seconds from the start of the recording. Large squares 0.2 s "
        f"and {5 / gain:g} mV.",
        va="center",
        fontsize=6,
        color="#374151",
    )
    axes.text(
        width_mm - RIGHT_MM,
        2.0,
        "Research software, not a medical device",
        ha="right",
        va="center",
        fontsize=6,
        color="#6b7280",
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Description": scale.label})
    return buffer.getvalue()


def _draw_row(
    axes, recording, first, values, bottom, paper_mm, gain, beats, leads_off, marker, heat
) -> None:
    """One row of a strip: paper, bands, heat, trace, calibration pulse, labels and seconds.
    ``first`` is the row's first sample, ``values`` its samples (mV), ``bottom`` the paper's
    lower edge (mm)."""
    fs = recording.sampling_rate_hz
    end = first + len(values)
    top = bottom + ROW_PAPER_MM

    def x_of(sample: float) -> float:
        return LEFT_MM + (sample - first) / fs * PAPER_SPEED_MM_PER_S

    # the paper: 1 mm and 5 mm lines from where the trace starts, so a large square is 0.2 s
    # from the row's first sample; the calibration pulse's stretch on the left is paper too
    columns = np.arange(-int(CAL_MM), int(np.floor(paper_mm)) + 1)
    lines = np.arange(0, int(ROW_PAPER_MM) + 1)
    for major, colour, width in ((False, "#fbd5d5", 0.35), (True, "#f29c9c", 0.7)):
        xs = LEFT_MM + columns[(columns % 5 == 0) == major]
        ys = bottom + lines[(lines % 5 == 0) == major]
        axes.vlines(xs, bottom, top, colors=colour, linewidth=width, zorder=0)
        axes.hlines(
            ys, LEFT_MM - CAL_MM, LEFT_MM + paper_mm, colors=colour, linewidth=width, zorder=0
        )
    if heat is not None:
        heat_first, heat_values = heat
        lo, hi = max(first, heat_first), min(end, heat_first + len(heat_values))
        if hi > lo:
            draw_saliency(
                axes,
                heat_values[lo - heat_first : hi - heat_first],
                (x_of(lo), x_of(hi), bottom, top),
            )
    # nothing stored: a grey band, the line breaks at the NaN (nothing is interpolated)
    for lo, hi in _runs(~np.isfinite(values)):
        axes.fill_between(
            [x_of(first + lo), x_of(first + hi)],
            bottom,
            top,
            color=GAP_COLOUR,
            linewidth=0,
            zorder=2,
        )
        axes.text(
            (x_of(first + lo) + x_of(first + hi)) / 2,
            (bottom + top) / 2,
            "no data",
            ha="center",
            va="center",
            fontsize=8,
            color="#6b7280",
            zorder=4,
        )
    centre = row_centre_mv(values, gain)
    y = bottom + ROW_PAPER_MM / 2 + (values - centre) * gain
    (trace,) = axes.plot(
        x_of(first + np.arange(len(values))), y, color=TRACE_COLOUR, linewidth=0.9, zorder=3
    )
    trace.set_clip_path(
        Rectangle((LEFT_MM, bottom), paper_mm, ROW_PAPER_MM, transform=axes.transData)
    )
    # samples sent with an electrode off: drawn as sent, under a band that says they are no ECG
    for lo, hi in leads_off:
        lo, hi = max(lo, first), min(hi, end)
        if hi > lo:
            axes.fill_between(
                [x_of(lo), x_of(hi)], bottom, top, color=LEADS_OFF_COLOUR, linewidth=0, zorder=3.5
            )
            axes.text(
                (x_of(lo) + x_of(hi)) / 2,
                top - 1.0,
                "Leads off",
                ha="center",
                va="top",
                fontsize=8,
                weight="bold",
                color=LEADS_OFF_TEXT,
                zorder=4,
            )
    # 1 mV for 0.2 s at the gain used, centred on the row's middle
    pulse_x = LEFT_MM - CAL_MM + 1.0
    low, high = bottom + ROW_PAPER_MM / 2 - gain / 2, bottom + ROW_PAPER_MM / 2 + gain / 2
    axes.plot(
        [pulse_x, pulse_x + 1.5, pulse_x + 1.5, pulse_x + 6.5, pulse_x + 6.5, pulse_x + 8.0],
        [low, low, high, high, low, low],
        color=TRACE_COLOUR,
        linewidth=0.9,
        zorder=3,
    )
    for mark in beats:
        if first <= mark.sample < end:
            axes.text(
                x_of(mark.sample),
                top + 1.0,
                mark.label,
                ha="center",
                va="bottom",
                fontsize=10 if mark.chosen else 8,
                fontweight="bold" if mark.chosen else "normal",
                color=LABEL_COLOURS.get(mark.label, TRACE_COLOUR),
                zorder=4,
            )
    if marker is not None and first <= marker < end:
        axes.vlines(x_of(marker), bottom, top, colors="#dc2626", linewidth=1.2, zorder=4)
    for second in range(int(np.ceil(first / fs)), int(np.floor((end - 1) / fs)) + 1):
        axes.text(
            x_of(second * fs),
            bottom - 1.0,
            f"{second}",
            ha="center",
            va="top",
            fontsize=7,
            color="#374151",
        )


def render_strip_png(
    recording: Recording, request: StripRequest, gain_mm_per_mv: float | None = None
) -> bytes:
    """The results page's strip as a PNG: the analysed lead on ECG paper
    (``render_paper_png``), beat labels, and the chosen beat's saliency behind the trace.
    Beat rows (``BEAT_ROW_FORMATS``) have no time base or voltage: ``render_beat_rows_png``."""
    if recording.upload_format in BEAT_ROW_FORMATS:
        return render_beat_rows_png(recording, request)
    fs = recording.sampling_rate_hz
    # only the chunks in the strip, gaps as NaN (a device recording may have some)
    piece = samples_mv(recording, request.start, request.end)
    heat = None
    if request.beat is not None:
        explained = saliency(recording, request.beat)
        heat = (int(explained["start"]), np.asarray(explained["values"], dtype=np.float64))
    chosen = request.beat.pk if request.beat is not None else None
    beats = recording.beats.filter(sample__gte=request.start, sample__lt=request.end)
    marks = [
        StripMark(sample, label, pk == chosen)
        for pk, sample, label in beats.values_list("pk", "sample", "label")
    ]
    t0, t1 = request.start / fs, (request.start + max(len(piece) - 1, 0)) / fs
    title = f"Recording {recording.pk} · {recording.analysis_lead_name} · {t0:.2f}-{t1:.2f} s"
    if request.beat is not None:
        title += f" · saliency of beat {request.beat.index + 1} ({request.beat.label})"
    return render_paper_png(
        recording,
        request.start,
        piece,
        title,
        marks,
        lead_off_spans(recording, request.start, request.end),
        heat=heat,
        gain_mm_per_mv=gain_mm_per_mv,
    )


def render_range_png(
    recording: Recording,
    start: int,
    end: int,
    marker_sample: int | None = None,
    title: str = "",
    channel: int | None = None,
    gain_mm_per_mv: float | None = None,
) -> bytes:
    """A PNG of samples ``[start, end)`` of one channel (the analysed one unless told) on ECG
    paper with the stored beat labels (``render_paper_png``).

    For live recordings (alarm emails) and the review page: reads only the chunks in the
    range, draws a range no chunk covers as a gap and the leads-off spans as such, and marks
    ``marker_sample`` (the alarm's event) with a vertical line.
    """
    fs = recording.sampling_rate_hz
    channel = recording.analysis_lead if channel is None else channel
    piece = samples_mv(recording, start, end, channel=channel)
    beats = recording.beats.filter(sample__gte=start, sample__lt=end)
    marks = [StripMark(sample, label) for sample, label in beats.values_list("sample", "label")]
    t0, t1 = start / fs, max(end - 1, start) / fs
    heading = f"Recording {recording.pk} · {recording.lead_names[channel]} · {t0:.1f}-{t1:.1f} s"
    return render_paper_png(
        recording,
        start,
        piece,
        f"{heading} · {title}" if title else heading,
        marks,
        lead_off_spans(recording, start, end),
        marker_sample=marker_sample,
        gain_mm_per_mv=gain_mm_per_mv,
    )


def render_beat_rows_png(recording: Recording, request: StripRequest) -> bytes:
    """Beat rows (Kaggle-style uploads) laid end to end, scaled to fit: they have no time
    base between beats, and a ``kaggle187`` row no voltage (0..1), so there is no paper."""
    fs = recording.sampling_rate_hz
    piece = samples_mv(recording, request.start, request.end)
    stored = np.isfinite(piece)
    t = (request.start + np.arange(len(piece))) / fs
    length_s = len(piece) / fs
    figure = Figure(figsize=(min(30.0, max(6.0, length_s * 1.0)), 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    low, high = (
        (float(np.min(piece[stored])), float(np.max(piece[stored])))
        if stored.any()
        else (-1.0, 1.0)
    )
    margin = max(0.25 * (high - low), 0.05)
    ymin, ymax = low - margin, high + 2 * margin
    if request.beat is not None:
        heat = saliency(recording, request.beat)
        values = np.asarray(heat["values"], dtype=np.float64)
        first = int(heat["start"])
        lo, hi = max(first, request.start), min(first + len(values), request.end)
        if hi > lo:
            draw_saliency(axes, values[lo - first : hi - first], (lo / fs, hi / fs, ymin, ymax))
    axes.plot(t, piece, color=TRACE_COLOUR, linewidth=0.9, zorder=3)
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
            color=LABEL_COLOURS.get(beat.label, TRACE_COLOUR),
            zorder=4,
        )
    length = ROW_LAYOUTS[recording.upload_format].n_samples
    for boundary in range((request.start // length + 1) * length, request.end, length):
        axes.axvline(boundary / fs, color="#9ca3af", linewidth=0.6, linestyle=":")
    # a little room on the left: a Kaggle row's R peak (and its label) is its first sample
    axes.set_xlim(t[0] - 0.015 * length_s, t[-1] if len(t) > 1 else t[0] + 1 / fs)
    axes.set_ylim(ymin, ymax)
    axes.set_xlabel("time (s), rows laid end to end")
    axes.set_ylabel("mV" if recording.upload_format != "kaggle187" else "normalized")
    title = f"Recording {recording.pk} · {recording.analysis_lead_name} · {t[0]:.2f}-{t[-1]:.2f} s"
    if request.beat is not None:
        title += f" · saliency of beat {request.beat.index + 1} ({request.beat.label})"
    axes.set_title(title, fontsize=9, loc="left", parse_math=False)
    return _png(figure)


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
