"""Streaming analysis of one ECG lead: the offline pipeline, fed in chunks, with its state saved.

    analyzer = StreamingAnalyzer(fs_hz=250.0)
    update = analyzer.push(chunk_mv)        # what became final: beats, VF segments, windows,
                                            # and provisional labels of the newest beats
    state = analyzer.to_bytes()             # store it; later, maybe in another process:
    analyzer = StreamingAnalyzer.from_bytes(state)
    update = analyzer.finish()              # end of the signal: everything left

Whatever the chunk sizes, and with the state saved and restored between any two pushes, the
updates together equal one offline pass over the whole signal:

- beats: ``inference.analysis.analyze_signal``: the ``inference.qrs`` R peaks exactly, the
  AAMI labels of ``inference.beats`` and their probabilities within 1e-5 (see "Beats");
- VF segments: ``inference.vf.vf_probability``;
- windows: ``inference.predictor``'s 2-s windows.

Provisional beats
    Waiting 6.5 s for a beat's label is too long for a live trace, so each ``push`` also
    returns, once, every beat whose next beat the QRS detector has made final since the last
    push (so about one RR interval plus 0.3 s after its R peak), with a *provisional* label:
    the label the offline pass would give if the signal ended at the last sample pushed
    (``finish``'s rules on a copy of the state: the band-pass ends there, the first blocks
    use the beats known so far). Its post-RR is known; without it (labelling the newest beat
    at once, its post-RR taken as its pre-RR) the provisional label missed most premature
    beats: on 5 minutes of MIT-BIH 232, 201, 208 and 119 in 1-s pushes it equalled the final
    label for 80, 88, 96 and 99 % of beats, and with the post-RR for 99.4, 99.1, 99.2 and
    99.7 %. The same beat comes out again, final, about 6 s later with the same R peak; its
    label may differ. ``finish`` labels the rest finally, none provisionally.

Rhythm episodes are not streamed: ``inference.rhythm.episodes_from_beats`` computes them from
stored beats and VF segment probabilities (the Django side does that on what it stored).

Pauses
    A beat is emitted only once its next beat is known, so during an asystole the last beat
    before it is never emitted and ``beats_final_through`` stays there. A pause needs only
    beat positions, which the QRS detector makes final far sooner: ``pending_beat_samples``
    are the R peaks detected but not emitted yet, and ``beat_positions_final_through`` the
    sample before which every R peak is known (``StreamingQrsDetector.peaks_final_through``).
    Pauses are read from the emitted and pending beats up to there
    (``episodes_from_beats(..., unlabelled_s=...)``); the classes, rates and rhythms stay on
    emitted beats. That frontier trails the last sample pushed by about 0.4 s (the 150 ms a
    QRS candidate waits for and the 250 ms its R peak is looked for before it), and by up to
    about 4.5 s while a candidate after the last beat may still be taken by search-back or a
    recovery (the detector drops one once it is 4 s older than a newer candidate; the noise
    on a flat line makes such candidates all the time). So a pause of ``pause_s`` is known
    0.4-4.5 s after ``pause_s`` has passed: on 25 or 60 s of sinus rhythm at 72 bpm then a
    flat line, in 0.1-s pushes at 250, 360 and 500 Hz (rounded to 5-uV steps), a 3-s pause
    was known 3.4 s after the last R peak on an exactly flat line and 6.5-7.3 s after it with
    10-30 uV of noise (tests/test_asystole_live.py checks 8 s).

What is emitted when
--------------------
Beats
    A beat is emitted once everything its features depend on is known: the next beat (its
    post-RR interval) and ``MARGIN_AFTER_S`` (6 s) of signal after the end of its window
    (0.42 s after the R peak), because the window is read from a zero-phase band-pass whose
    backward pass starts at the end of the signal held. So a beat comes out about 6.5 s after
    its R peak (measured on MIT-BIH 208 in 0.1-s pushes: median 6.47 s, 95th percentile
    6.52 s), later after a pause longer than that (the next beat must have come and been
    confirmed by the QRS detector). The first 32 beats wait until 32 beats are known (their
    average RR is the median of the first 32 intervals, their dominant beat the median of the
    first 16 windows), as in the offline pass: about 20-30 s at the start of a stream. At
    ``finish`` every beat left is emitted with the offline rules for the end of a recording
    (the last beat's post-RR is its pre-RR; fewer than 32 or 16 beats when there are no more).
    Exactness: R peaks, RR features and the block structure of the dominant beat and of the
    average RR are the offline pass's to the bit (the same functions of ``inference.beats``
    on the history kept). The band-pass is the one approximation: within a stream a window's
    filter sees ``MARGIN_BEFORE_S`` (8 s) before it and 6 s after it instead of the whole
    recording. The transient decays about tenfold per second (the 0.5 Hz high-pass): 4 s
    after a window left errors up to 3e-4 mV, 5 s 3e-5 mV, 6 s 5e-6 mV (MIT-BIH 203, 208,
    232). On 5-minute excerpts of those records the probabilities agree within 2.2e-6 (with
    5 s after: 4.3e-5); windows whose filter reaches the start or end of the signal are exact.
VF segments
    Segment k (samples ``[k n, (k + 1) n)``, ``n = round(2 fs)``) as soon as its last sample
    has arrived (``inference.vf`` is causal); only when the rate is not a multiple of the
    VF detector's reduction step may the last segment so far wait for the next one or for
    ``finish`` (the offline pass can shift the very last segment by a sample). The
    probabilities equal ``vf_probability``'s up to numpy's rounding on batches of another
    size (1e-15).
Windows
    The 2-s window model sees the signal resampled to 250 Hz and cut into consecutive
    500-sample windows from the first sample (``WindowPredictor.split``). Full window k is
    decided as soon as the samples the resampler's filter reads for it (a few tens of ms past
    its end) have arrived, about 2 s after its first sample. The trailing piece is decided at
    ``finish`` with the predictor's rule: padded into a window when at least 1 s long,
    dropped when shorter; a stream shorter than 1 s has no window (the predictor refuses such
    a signal). The resampler runs on an excerpt starting where its polyphase pattern starts,
    so the windows are the whole signal's for rates whose ratio to 250 Hz is a fraction with a
    denominator up to 10,000 (any rate with one decimal); probabilities differ from the
    predictor's only by the CNN's float32 rounding on batches of another size (3e-7).
A stream shorter than 2 s has no beats (the QRS detector needs 2 s; ``analyze_signal``
refuses such a signal) and no VF segment.

State and cost
--------------
``to_bytes`` is a compressed NumPy ``.npz`` archive (no pickle: it is read with
``allow_pickle=False``) of the arrays and a JSON document with the numbers and model names.
It holds bounded history: the QRS detector's few seconds, the signal from 8 s before the
next beat without a window, the beat windows of the current and previous dominant-beat
blocks (up to about 100), the R peaks of the last 5 minutes, the VF filter state with the
last seconds of its reduced signal, and the resampler's last 2 s. Measured every 5 s over
10-minute excerpts of MIT-BIH 208 and 232 (at 250 Hz resampled and rounded to ADC steps of
5 uV): at most 87 KB at 250 Hz and 86 KB at 360 Hz (121-145 KB before compression, of which
48 KB beat windows and 29-42 KB signal); the signal parts grow with the rate. Cost: about
1.3-1.6 ms of CPU per second of signal in 5-s pushes (state saved after each), 4.4 ms in
0.1-s pushes (one thread; the beat and window models on small batches dominate).
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy import signal as sps

from inference import atrial
from inference.aami import AAMI_CLASSES
from inference.beats import (
    BANDPASS_HZ,
    LOCAL_RR_BEATS,
    LONG_RR_S,
    LONG_RR_UPDATE_BEATS,
    TEMPLATE_START_BEATS,
    TEMPLATE_UPDATE_BEATS,
    WINDOW_AFTER_S,
    WINDOW_BEFORE_S,
    WINDOW_SAMPLES,
    beat_p_waves,
    fold_s_in_af,
    get_beat_classifier,
    long_term_rr,
    rhythm_features,
    rr_columns,
    template_span,
    windows_from_filtered,
)
from inference.models import WINDOW_FS_HZ, prepare_windows
from inference.models import WINDOW_SAMPLES as MODEL_WINDOW_SAMPLES
from inference.predictor import MIN_SIGNAL_S, MIN_TAIL_S, get_predictor
from inference.qrs import MIN_DURATION_S, StreamingQrsDetector, _check_fs
from inference.signal import RESAMPLE_MAX_DENOMINATOR, bandpass, resample, validate_signal
from inference.vf import (
    FEATURE_NAMES,
    MIN_FS_HZ,
    SEGMENT_S,
    WINDOW_FEATURES,
    _band_sos_cached,
    _window_features,
    context_features,
    shipped_model,
)

# Signal kept on each side of a beat window for its zero-phase band-pass: the filter's
# transient decays about tenfold per second (0.5 Hz high-pass). The margin after a window
# delays every beat; the one before costs only memory.
MARGIN_AFTER_S = 6.0
MARGIN_BEFORE_S = 8.0
STATE_FORMAT = "cardiospike.streaming"
STATE_VERSION = 5
# version 2 had no provisional beats: its next push labels every known beat provisionally;
# versions 2 and 3 had no P waves: the beats they knew read as P wave unknown, not V;
# versions 2-4 were deflated .npz archives, version 5 is the plain container below
READABLE_STATE_VERSIONS = (2, 3, 4, 5)
# The server loads and saves a recording's state in every analysis round (about once a second
# per device), so the container is plain: STATE_MAGIC, the header's length (uint32), the
# header (JSON: the numbers, and each array's name, dtype and shape), the arrays' bytes one
# after another, and a CRC-32 of all before it. Deflating the ~125 kB (to ~80 kB: the arrays
# are mostly floats) and the .npz's zip members cost about 5 ms of a round's CPU; this takes
# well under 1 ms.
STATE_MAGIC = b"CSSTATE\x00"
_UINT32 = struct.Struct("<I")


@dataclass
class StreamWindow:
    """The 2-s window model's verdict on one window (samples at the stream's rate)."""

    start_sample: int
    n_samples: int
    label: str
    probabilities: dict[str, float]
    model_name: str
    model_version: str


@dataclass
class StreamUpdate:
    """What became final in one ``push`` or ``finish``.

    beat_samples : int64 R-peak sample indices, counted from the first sample pushed
    beat_labels : AAMI class of each beat (``inference.aami.AAMI_CLASSES``)
    beat_probabilities : float64 (n_beats, 5), columns in ``AAMI_CLASSES`` order
    beat_p_wave : float64 P-wave correlation of each beat (``inference.atrial``; NaN where
        the beat does not look like the dominant beat), which the AF detector reads
    provisional_samples, provisional_labels, provisional_probabilities : the same for the
        beats not yet final whose next beat is now known, labelled as if the signal ended
        here (see "Provisional beats"); each beat appears there at most once, before it is
        final
    vf_segments : int64 indices of 2-s segments (segment k starts at sample ``k round(2 fs)``)
    vf_probabilities : their VF/VFL probability (``inference.vf``)
    windows : the window model's verdicts, in order
    """

    beat_samples: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    beat_labels: list[str] = field(default_factory=list)
    beat_probabilities: np.ndarray = field(default_factory=lambda: np.empty((0, len(AAMI_CLASSES))))
    beat_p_wave: np.ndarray = field(default_factory=lambda: np.empty(0))
    vf_segments: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    vf_probabilities: np.ndarray = field(default_factory=lambda: np.empty(0))
    windows: list[StreamWindow] = field(default_factory=list)
    provisional_samples: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    provisional_labels: list[str] = field(default_factory=list)
    provisional_probabilities: np.ndarray = field(
        default_factory=lambda: np.empty((0, len(AAMI_CLASSES)))
    )


class StreamingAnalyzer:
    """The analysis pipeline on a signal that arrives in chunks (see the module notes).

    Parameters
    ----------
    fs_hz : sampling rate in Hz, 100-2000
    """

    def __init__(self, fs_hz: float) -> None:
        self.fs_hz = _check_fs(fs_hz)
        self.n_samples_pushed = 0
        self.n_beats_emitted = 0
        self._finished = False
        self._qrs = StreamingQrsDetector(self.fs_hz)
        self._beats = _BeatStage(self.fs_hz, get_beat_classifier().name)
        self._vf = _VfStage(self.fs_hz)
        self._windows = _WindowStage(self.fs_hz, get_predictor().name)

    def push(self, ecg_mv: np.ndarray) -> StreamUpdate:
        """Add the next samples (1-D, millivolts, any length including 0); return what became
        final."""
        if self._finished:
            raise ValueError("this stream was finished; start a new StreamingAnalyzer")
        if isinstance(ecg_mv, np.ndarray | list | tuple) and len(ecg_mv) == 0:
            return StreamUpdate()
        chunk = validate_signal(ecg_mv, name="chunk", min_samples=1)
        if chunk.ndim != 1:
            raise ValueError(f"push takes one lead (a 1-D chunk), got shape {chunk.shape}")
        self.n_samples_pushed += len(chunk)
        peaks = self._qrs.push(chunk)
        beats = self._beats.push(chunk, peaks, self._qrs.oldest_sample)
        segments, vf_probabilities = self._vf.push(chunk)
        windows = self._windows.push(chunk)
        update = self._update(beats, segments, vf_probabilities, windows)
        provisional = self._beats.provisional()
        update.provisional_samples = provisional.samples
        update.provisional_probabilities = provisional.probabilities
        update.provisional_labels = _labels(update.provisional_probabilities)
        return update

    @property
    def beats_final_through(self) -> int:
        """Sample index before which every beat of the stream has been emitted.

        Beats come out about 6.5 s after their R peak, so the last seconds pushed hold beats
        not yet known: a caller that reads the classes or the rate of the beats must stop
        here, not at ``n_samples_pushed`` (for a pause, which needs positions only, see
        ``beat_positions_final_through``). It is the earliest of the first detected beat not
        yet emitted and the oldest sample the QRS detector may still place a beat at; after
        ``finish`` it is the end of the signal.
        """
        if self._finished:
            return self.n_samples_pushed
        beats = self._beats
        frontier = min(self._qrs.oldest_sample, self.n_samples_pushed)
        pending = beats.n_emitted - beats.first_beat
        if 0 <= pending < len(beats.peaks):
            frontier = min(frontier, int(beats.peaks[pending]))
        # the detector's bound is loose (it keeps a few seconds of history); beats come out in
        # order, so the next one also lies after the last one emitted
        if 0 < pending <= len(beats.peaks):
            frontier = max(frontier, int(beats.peaks[pending - 1]) + 1)
        return frontier

    @property
    def beat_positions_final_through(self) -> int:
        """Sample index before which the R peak of every beat of the stream is known, emitted
        or not (``pending_beat_samples``): the QRS detector can no longer place a beat before
        it. About 0.4 s behind the last sample pushed, at most about 4.5 s (see "Pauses");
        after ``finish`` the end of the signal.

        A pause is known from beat positions alone, so a caller that looks for one reads
        the beats emitted and those pending up to here, not only up to
        ``beats_final_through``, which stays at the last beat for as long as no beat follows
        it (the last beat is emitted only once its next beat is known): an asystole that
        never ends would otherwise never be seen.
        """
        if self._finished:
            return self.n_samples_pushed
        frontier = min(self._qrs.peaks_final_through, self.n_samples_pushed)
        # the detector's bound may lie before an R peak it has already returned (it looks
        # back 250 ms for it); peaks come out in order, so the next one lies after that one
        peaks = self._beats.peaks
        if len(peaks):
            frontier = max(frontier, int(peaks[-1]) + 1)
        return frontier

    @property
    def pending_beat_samples(self) -> np.ndarray:
        """R peaks (int64 sample indices, increasing) of the beats detected but not emitted
        yet, which all follow the beats emitted; empty after ``finish``."""
        beats = self._beats
        return beats.peaks[beats.n_emitted - beats.first_beat :].copy()

    def beatless_s(self) -> float:
        """Seconds without a beat up to ``beat_positions_final_through``: from the newest R
        peak detected (emitted or not), or from the first sample when there is none."""
        peaks = self._beats.peaks
        last = int(peaks[-1]) if len(peaks) else 0
        return max(0, self.beat_positions_final_through - last) / self.fs_hz

    def finish(self) -> StreamUpdate:
        """End of the signal: return everything still pending. Later calls return nothing."""
        if self._finished:
            return StreamUpdate()
        self._finished = True
        # analyze_signal refuses a signal shorter than the QRS detector's 2 s; a stream that
        # short simply has no beats
        if self.n_samples_pushed >= MIN_DURATION_S * self.fs_hz:
            peaks = self._qrs.flush()
        else:
            peaks = np.empty(0, dtype=np.int64)
        beats = self._beats.finish(peaks)
        segments, vf_probabilities = self._vf.finish()
        windows = self._windows.finish()
        return self._update(beats, segments, vf_probabilities, windows)

    def _update(self, beats, segments, vf_probabilities, windows) -> StreamUpdate:
        self.n_beats_emitted += len(beats.samples)
        return StreamUpdate(
            beat_samples=beats.samples,
            beat_labels=_labels(beats.probabilities),
            beat_probabilities=beats.probabilities,
            beat_p_wave=beats.p_wave,
            vf_segments=segments,
            vf_probabilities=vf_probabilities,
            windows=windows,
        )

    # --- state ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole state as bytes (version 5's container: see ``STATE_MAGIC``)."""
        parts = {
            "analyzer": {
                "fs_hz": self.fs_hz,
                "n_samples_pushed": self.n_samples_pushed,
                "n_beats_emitted": self.n_beats_emitted,
                "finished": self._finished,
            },
            "qrs": self._qrs.state_dict(),
            "beats": self._beats.state_dict(),
            "vf": self._vf.state_dict(),
            "windows": self._windows.state_dict(),
        }
        arrays: dict[str, np.ndarray] = {}
        numbers: dict[str, dict] = {}
        for part, state in parts.items():
            numbers[part] = {}
            for key, value in state.items():
                if isinstance(value, np.ndarray):
                    arrays[f"{part}.{key}"] = value
                else:
                    numbers[part][key] = value
        return _pack_state(numbers, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamingAnalyzer:
        """A stream in the state ``to_bytes`` saved. Raises ``ValueError`` for anything else."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"a stream state is bytes, got {type(data).__name__}")
        try:
            data = bytes(data)
            if data.startswith(STATE_MAGIC):
                header, arrays = _unpack_state(data)
            else:
                header, arrays = _unpack_legacy_state(data)
            if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
                raise ValueError("not a streaming analysis state")
            if header.get("version") not in READABLE_STATE_VERSIONS:
                raise ValueError(f"state version {header.get('version')!r} is not {STATE_VERSION}")
            parts = {part: dict(values) for part, values in header["state"].items()}
            for name, array in arrays.items():
                part, key = name.split(".", 1)
                parts[part][key] = array
            top = parts["analyzer"]
            analyzer = cls.__new__(cls)
            analyzer.fs_hz = _check_fs(top["fs_hz"])
            analyzer.n_samples_pushed = int(top["n_samples_pushed"])
            analyzer.n_beats_emitted = int(top["n_beats_emitted"])
            analyzer._finished = bool(top["finished"])
            analyzer._qrs = StreamingQrsDetector.from_state_dict(parts["qrs"])
            analyzer._beats = _BeatStage.from_state_dict(parts["beats"])
            analyzer._vf = _VfStage.from_state_dict(parts["vf"])
            analyzer._windows = _WindowStage.from_state_dict(parts["windows"])
        except ValueError as exc:
            raise ValueError(f"not a valid streaming analysis state: {exc}") from None
        except (
            OSError,
            EOFError,
            KeyError,
            IndexError,
            TypeError,
            AttributeError,
            zipfile.BadZipFile,
            zlib.error,
        ) as exc:
            raise ValueError(
                f"not a valid streaming analysis state ({type(exc).__name__}: {exc})"
            ) from None
        stages = (analyzer._qrs.fs_hz, analyzer._beats.fs_hz, analyzer._vf.fs_hz)
        if any(fs != analyzer.fs_hz for fs in (*stages, analyzer._windows.fs_hz)):
            raise ValueError("not a valid streaming analysis state: the stages' rates differ")
        return analyzer


def _pack_state(numbers: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """Version 5's container (see ``STATE_MAGIC``)."""
    layout, blobs = [], []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        layout.append([name, array.dtype.str, list(array.shape)])
        blobs.append(array.tobytes())
    header = {"format": STATE_FORMAT, "version": STATE_VERSION, "state": numbers}
    header_bytes = json.dumps({**header, "arrays": layout}).encode()
    payload = b"".join([STATE_MAGIC, _UINT32.pack(len(header_bytes)), header_bytes, *blobs])
    return payload + _UINT32.pack(zlib.crc32(payload))


def _unpack_state(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of version 5's container; ``ValueError`` for anything else."""
    start = len(STATE_MAGIC) + _UINT32.size
    if len(data) < start + _UINT32.size:
        raise ValueError("truncated")
    (crc,) = _UINT32.unpack_from(data, len(data) - _UINT32.size)
    if zlib.crc32(data[: -_UINT32.size]) != crc:
        raise ValueError("the CRC-32 does not match: corrupt or truncated")
    (header_length,) = _UINT32.unpack_from(data, len(STATE_MAGIC))
    header = json.loads(data[start : start + header_length].decode())
    offset, end = start + header_length, len(data) - _UINT32.size
    arrays = {}
    for name, dtype_name, shape in header.pop("arrays"):
        dtype = np.dtype(dtype_name)
        if dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects")
        count = math.prod(shape)
        if offset + count * dtype.itemsize > end:
            raise ValueError(f"array {name!r} runs past the end")
        # a copy: the stages append to and write into their arrays
        array = np.frombuffer(data, dtype, count, offset).reshape(shape).copy()
        arrays[name] = array
        offset += count * dtype.itemsize
    if offset != end:
        raise ValueError(f"{end - offset} bytes after the arrays")
    return header, arrays


def _unpack_legacy_state(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of versions 2-4: a deflated .npz archive."""
    with np.load(io.BytesIO(zlib.decompress(data)), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays.pop("header").tobytes().decode())
    return header, arrays


def _labels(probabilities: np.ndarray) -> list[str]:
    return [AAMI_CLASSES[i] for i in probabilities.argmax(axis=1)]


# --- Stages' state ------------------------------------------------------------------------


def _floats(value: object) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)


class _Stage:
    """A stage whose state is its rate, its model (if any) and the attributes in ``SAVED``
    (name -> how to read the saved value back)."""

    SAVED: dict = {}

    def state_dict(self) -> dict:
        state = {name: getattr(self, name) for name in self.SAVED}
        state["fs_hz"] = self.fs_hz
        if hasattr(self, "model_name"):
            state["model_name"] = self.model_name
        return state

    @classmethod
    def _saved(cls, state: dict, *args: object) -> _Stage:
        """A stage built as the saved one was (rate, model), with its attributes restored."""
        try:
            stage = cls(float(state["fs_hz"]), *args)
        except LookupError as exc:  # a model that is not shipped (any more)
            raise ValueError(str(exc)) from None
        for name, read in cls.SAVED.items():
            setattr(stage, name, read(state[name]))
        return stage


# --- Beats --------------------------------------------------------------------------------


@dataclass
class _Beats:
    """Beats a beat stage emits: R peaks, class probabilities, P-wave correlations."""

    samples: np.ndarray
    probabilities: np.ndarray
    p_wave: np.ndarray

    @classmethod
    def none(cls) -> _Beats:
        return cls(np.empty(0, dtype=np.int64), np.empty((0, len(AAMI_CLASSES))), np.empty(0))


class _BeatStage(_Stage):
    """Beat features and classes for R peaks as they come, with bounded history.

    Beat numbers are absolute (0 = the stream's first beat). Kept: the R peaks from beat
    ``first_beat`` with each one's average RR and running sum of RR changes once known, and
    once emitted its P-wave correlation and whether it is V (the rhythm context of the
    classifier's fold of S into N in AF, ``atrial.HISTORY_BEATS`` back), the windows from
    beat ``first_window``, and the signal from sample ``signal_start``.
    """

    def __init__(self, fs_hz: float, model_name: str) -> None:
        self.fs_hz = fs_hz
        self.model_name = model_name
        self._classifier = get_beat_classifier(model_name)
        # reach of a window (samples, with the interpolation's next sample) and the margin
        self._before = math.ceil(WINDOW_BEFORE_S * fs_hz) + 1
        self._after = math.ceil(WINDOW_AFTER_S * fs_hz) + 1
        self._margin_before = math.ceil(MARGIN_BEFORE_S * fs_hz)
        self._margin_after = math.ceil(MARGIN_AFTER_S * fs_hz)
        self.n_pushed = 0
        self.signal = np.empty(0)
        self.signal_start = 0
        self.first_beat = 0
        self.peaks = np.empty(0, dtype=np.int64)
        self.average = np.empty(0)  # average RR (s) of each beat's block, NaN until known
        self.cumulative = np.empty(0)  # running sum of |pre-RR changes|, NaN until known
        self.p_wave = np.empty(0)  # P-wave correlation, NaN until emitted (and where none)
        self.ventricular = np.empty(0)  # 1.0 for a beat emitted as V, else 0.0
        self.first_window = 0
        self.windows = np.empty((0, WINDOW_SAMPLES), dtype=np.float32)
        self.n_emitted = 0
        self.n_provisional = 0  # beats given a provisional label so far

    @property
    def n_known(self) -> int:
        return self.first_beat + len(self.peaks)

    def push(self, chunk: np.ndarray, peaks: np.ndarray, oldest_future_peak: int) -> _Beats:
        self.signal = np.concatenate((self.signal, chunk))
        self.n_pushed += len(chunk)
        self._add_peaks(peaks)
        self._compute_windows(final=False)
        emitted = self._emit(final=False)
        self._trim(oldest_future_peak)
        return emitted

    def provisional(self) -> _Beats:
        """The known beats not yet emitted nor given a provisional label, but with their next
        beat known, labelled on a copy of this stage as ``finish`` would label them if the
        signal ended here."""
        begin = max(self.n_provisional, self.n_emitted)
        if begin >= self.n_known - 1:
            return _Beats.none()
        # a shallow copy: _compute_windows and _emit replace the arrays they grow, but fill
        # the per-beat arrays in place, so those are copied
        copy = object.__new__(_BeatStage)
        copy.__dict__.update(self.__dict__)
        for name in ("average", "cumulative", "p_wave", "ventricular"):
            setattr(copy, name, getattr(self, name).copy())
        copy._compute_windows(final=True)
        # features and classes of the new beats only (a beat's features do not depend on
        # where an emission starts): the model sees one or two beats a push, not all ~8
        # waiting for their look-ahead
        copy.n_emitted = begin
        beats = copy._emit(final=True)
        self.n_provisional = self.n_known - 1
        return _Beats(beats.samples[:-1], beats.probabilities[:-1], beats.p_wave[:-1])

    def finish(self, peaks: np.ndarray) -> _Beats:
        self._add_peaks(peaks)
        self._compute_windows(final=True)
        return self._emit(final=True)

    def _add_peaks(self, peaks: np.ndarray) -> None:
        if len(peaks):
            self.peaks = np.concatenate((self.peaks, np.asarray(peaks, dtype=np.int64)))
            self.average = np.concatenate((self.average, np.full(len(peaks), np.nan)))
            self.cumulative = np.concatenate((self.cumulative, np.full(len(peaks), np.nan)))
            self.p_wave = np.concatenate((self.p_wave, np.full(len(peaks), np.nan)))
            self.ventricular = np.concatenate((self.ventricular, np.zeros(len(peaks))))

    def _compute_windows(self, final: bool) -> None:
        """Windows of the beats whose band-pass has its margin (all of them at the end)."""
        done = self.first_window + len(self.windows)
        todo = self.peaks[done - self.first_beat :]
        if not final:
            todo = todo[todo + self._after + self._margin_after <= self.n_pushed]
        if len(todo) == 0:
            return
        first = max(self.signal_start, int(todo[0]) - self._before - self._margin_before)
        filtered = bandpass(self.signal[first - self.signal_start :], self.fs_hz, *BANDPASS_HZ)
        windows = windows_from_filtered(filtered, self.fs_hz, todo, first_sample=first)
        self.windows = np.concatenate((self.windows, windows))

    def _emit(self, final: bool) -> _Beats:
        """Features and classes of the beats whose dependencies are all known."""
        n_known = self.n_known
        begin = self.n_emitted
        n_windows = self.first_window + len(self.windows)
        if final:
            end = n_known
        elif n_known < LONG_RR_UPDATE_BEATS or n_windows < TEMPLATE_START_BEATS:
            end = begin  # the first block's average RR and dominant beat look ahead
        else:
            end = min(n_windows, n_known - 1)  # the last known beat lacks its post-RR
        if end <= begin:
            return _Beats.none()

        base = self.first_beat  # absolute beat number of local index 0
        peaks = self.peaks.astype(np.float64)
        pre = np.full(len(peaks), np.nan)
        if len(peaks) > 1:
            pre[1:] = np.diff(peaks) / self.fs_hz
        if base == 0:  # the first beat takes its post-RR as pre-RR; a lone beat 1 s
            pre[0] = pre[1] if len(peaks) > 1 else 1.0
        post = np.append(pre[1:], pre[-1] if final else np.nan)
        times_s = peaks / self.fs_hz

        for block in range(begin // LONG_RR_UPDATE_BEATS, (end - 1) // LONG_RR_UPDATE_BEATS + 1):
            start = block * LONG_RR_UPDATE_BEATS
            block_end = max(start, min(n_known, LONG_RR_UPDATE_BEATS))
            stop = min(start + LONG_RR_UPDATE_BEATS, end)
            self.average[start - base : stop - base] = long_term_rr(pre, times_s, block_end - base)

        # running sum of |pre-RR changes|, carried value by value as one pass would add it
        missing = np.flatnonzero(np.isnan(self.cumulative[: end - base]))
        if len(missing):
            first = int(missing[0])
            if first == 0:  # only at the stream's first beat (base 0)
                self.cumulative[0] = 0.0
                first = 1
            successive = np.abs(np.diff(pre, prepend=pre[0]))
            self.cumulative[first : end - base] = np.cumsum(
                np.concatenate(
                    ([self.cumulative[first - 1]], successive[first - 1 : end - base - 1])
                )
            )[1:]

        history = max(0, begin - LOCAL_RR_BEATS) - base
        rr = rr_columns(
            pre[history : end - base],
            post[history : end - base],
            self.average[history : end - base],
            self.cumulative[history : end - base],
            n_history=begin - base - history,
        )
        windows = self.windows[begin - self.first_window : end - self.first_window]
        templates = np.empty_like(windows)
        for block in range(begin // TEMPLATE_UPDATE_BEATS, (end - 1) // TEMPLATE_UPDATE_BEATS + 1):
            start = block * TEMPLATE_UPDATE_BEATS
            first, last = template_span(start, n_known)
            history_windows = self.windows[first - self.first_window : last - self.first_window]
            rows = slice(max(start, begin) - begin, min(start + TEMPLATE_UPDATE_BEATS, end) - begin)
            templates[rows] = np.median(history_windows, axis=0)
        rhythm = rhythm_features(rr, windows, templates)
        probabilities = self._classifier.probabilities(windows, templates, rhythm)
        new = slice(begin - base, end - base)
        self.p_wave[new] = beat_p_waves(windows, templates, rhythm)
        # V is the same before and after the fold (it only moves S to N)
        self.ventricular[new] = probabilities.argmax(axis=1) == AAMI_CLASSES.index("V")
        if self._classifier.card.get("fold_s_in_af"):
            # the fold reads atrial.HISTORY_BEATS beats back, which _trim keeps
            first = max(0, begin - base - atrial.HISTORY_BEATS)
            probabilities = fold_s_in_af(
                probabilities,
                peaks[first : end - base] / self.fs_hz,
                self.p_wave[first : end - base],
                earlier_ventricular=self.ventricular[first : begin - base] > 0,
            )
        self.n_emitted = end
        return _Beats(self.peaks[new].copy(), probabilities, self.p_wave[new].copy())

    def _trim(self, oldest_future_peak: int) -> None:
        """Forget what no beat still to be emitted can need."""
        begin = self.n_emitted
        # beats: the local RR history, the AF context's history and the 5 minutes behind the
        # next block's average RR
        keep = begin - max(LOCAL_RR_BEATS + 1, atrial.HISTORY_BEATS)
        block = begin // LONG_RR_UPDATE_BEATS
        if block == 0:
            keep = 0
        else:
            last = block * LONG_RR_UPDATE_BEATS - 1 - self.first_beat
            times_s = self.peaks.astype(np.float64) / self.fs_hz
            oldest = int(np.searchsorted(times_s, times_s[last] - LONG_RR_S))
            keep = min(keep, self.first_beat + oldest - 1)
        cut = keep - self.first_beat
        if cut > 0:
            self.peaks = self.peaks[cut:]
            self.average = self.average[cut:]
            self.cumulative = self.cumulative[cut:]
            self.p_wave = self.p_wave[cut:]
            self.ventricular = self.ventricular[cut:]
            self.first_beat = keep
        # windows: the next dominant beat's history
        first, _ = template_span(begin // TEMPLATE_UPDATE_BEATS * TEMPLATE_UPDATE_BEATS, begin)
        cut = min(first, begin) - self.first_window
        if cut > 0:
            self.windows = self.windows[cut:]
            self.first_window += cut
        # signal: the band-pass margin before the next beat without a window
        next_window = self.first_window + len(self.windows)
        oldest_peak = oldest_future_peak
        if next_window < self.n_known:
            oldest_peak = min(oldest_peak, int(self.peaks[next_window - self.first_beat]))
        keep = oldest_peak - self._before - self._margin_before - 1
        cut = keep - self.signal_start
        if cut > self.fs_hz:  # in blocks of at least 1 s, not on every push
            self.signal = self.signal[cut:]
            self.signal_start = keep

    SAVED = {
        "n_pushed": int,
        "signal": _floats,
        "signal_start": int,
        "first_beat": int,
        "peaks": lambda value: np.asarray(value, dtype=np.int64),
        "average": _floats,
        "cumulative": _floats,
        "p_wave": _floats,
        "ventricular": _floats,
        "first_window": int,
        "windows": lambda value: np.asarray(value, dtype=np.float32).reshape(-1, WINDOW_SAMPLES),
        "n_emitted": int,
    }

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["n_provisional"] = self.n_provisional
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> _BeatStage:
        if "p_wave" not in state:  # a state of version 2 or 3
            n_peaks = len(np.asarray(state["peaks"]))
            state = {**state, "p_wave": np.full(n_peaks, np.nan), "ventricular": np.zeros(n_peaks)}
        stage = cls._saved(state, str(state["model_name"]))
        stage.n_provisional = int(state.get("n_provisional", stage.n_emitted))
        lengths = {len(getattr(stage, name)) for name in ("average", "cumulative", "p_wave")}
        if lengths != {len(stage.peaks)} or len(stage.ventricular) != len(stage.peaks):
            raise ValueError("beat arrays differ in length")
        if stage.signal_start + len(stage.signal) != stage.n_pushed:
            raise ValueError("beat signal does not end at the last sample pushed")
        return stage


# --- VF -----------------------------------------------------------------------------------


class _VfStage(_Stage):
    """``inference.vf.vf_probability`` segment by segment: the same reduction to 100-200 Hz,
    the same causal band-pass carried between chunks, the same features and 8-s means."""

    def __init__(self, fs_hz: float) -> None:
        self.fs_hz = fs_hz
        self._n = round(SEGMENT_S * fs_hz)  # samples per segment at fs
        self._step = max(1, int(fs_hz // MIN_FS_HZ))
        self._fs_reduced = fs_hz / self._step
        self._n_short = int(SEGMENT_S * self._fs_reduced)
        self._sos = _band_sos_cached(self._fs_reduced)
        self._model = shipped_model()
        self.n_raw = 0
        self.carry = np.empty(0)  # raw samples of an incomplete reduction block
        self.first_reduced: float | None = None
        self.zi = np.zeros((self._sos.shape[0], 2))
        self.band = np.empty(0)  # band-passed reduced signal from reduced sample band_start
        self.band_start = 0
        self.n_done = 0
        self.cumulative = np.zeros((1, len(WINDOW_FEATURES)))

    def push(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.n_raw += len(chunk)
        samples = np.concatenate((self.carry, chunk)) if len(self.carry) else chunk
        n_blocks = len(samples) // self._step
        self.carry = samples[n_blocks * self._step :].copy()
        if n_blocks:
            reduced = samples[: n_blocks * self._step].reshape(-1, self._step).mean(axis=1)
            if self.first_reduced is None:
                self.first_reduced = float(reduced[0])
            band, self.zi = sps.sosfilt(self._sos, reduced - self.first_reduced, zi=self.zi)
            self.band = np.concatenate((self.band, band))
        return self._decide(final=False)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        return self._decide(final=True)

    def _decide(self, final: bool) -> tuple[np.ndarray, np.ndarray]:
        n, step, n_short = self._n, self._step, self._n_short
        starts = []
        k = self.n_done
        while (k + 1) * n <= self.n_raw:
            start = int(np.round(k * SEGMENT_S * self._fs_reduced))
            if final:
                # vf.segment_features keeps the last window inside the reduced signal
                start = min(start, (self.n_raw // n) * n // step - n_short)
            elif start + n_short > (k + 1) * n // step and (k + 2) * n > self.n_raw:
                break  # may be the last segment, which the end of the signal could shift
            starts.append(start)
            k += 1
        if not starts:
            return np.empty(0, dtype=np.int64), np.empty(0)
        rows = np.asarray(starts)[:, None] - self.band_start + np.arange(n_short)
        short = _window_features(self.band[rows], self._fs_reduced)
        features, self.cumulative = context_features(short, self.cumulative)
        probabilities = self._model.probability(features)
        segments = np.arange(self.n_done, k, dtype=np.int64)
        self.n_done = k
        # keep the reduced signal from a segment before the next one (its start can move back
        # by a sample at the very end)
        keep = max(0, int(np.round(k * SEGMENT_S * self._fs_reduced)) - n_short)
        if keep - self.band_start > 4 * n_short:
            self.band = self.band[keep - self.band_start :]
            self.band_start = keep
        return segments, probabilities

    SAVED = {
        "n_raw": int,
        "carry": _floats,
        "first_reduced": _optional_float,
        "band": _floats,
        "band_start": int,
        "n_done": int,
    }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "zi": self.zi, "cumulative": self.cumulative}

    @classmethod
    def from_state_dict(cls, state: dict) -> _VfStage:
        stage = cls._saved(state)
        zi = np.asarray(state["zi"], dtype=np.float64)
        if zi.shape != stage.zi.shape:
            raise ValueError("VF filter state does not match the sampling rate")
        stage.zi = zi
        cumulative = np.asarray(state["cumulative"], dtype=np.float64)
        if cumulative.ndim != 2 or cumulative.shape[1] != len(FEATURE_NAMES) // 2:
            raise ValueError("VF running sums have the wrong shape")
        stage.cumulative = cumulative
        return stage


# --- 2-s windows --------------------------------------------------------------------------


class _WindowStage(_Stage):
    """The window model on consecutive 2-s windows, as ``WindowPredictor.split`` cuts them.

    The signal is resampled to 250 Hz with ``inference.signal.resample`` on an excerpt that
    starts at a sample where the resampler's polyphase pattern starts (a multiple of
    ``down``), so the excerpt's output samples are the whole signal's, away from its edges.
    """

    def __init__(self, fs_hz: float, model_name: str) -> None:
        self.fs_hz = fs_hz
        self.model_name = model_name
        self._predictor = get_predictor(model_name)
        if fs_hz == WINDOW_FS_HZ:
            self._up = self._down = 1
            self._reach_in = self._reach_out = 0
        else:
            ratio = (Fraction(WINDOW_FS_HZ) / Fraction(fs_hz)).limit_denominator(
                RESAMPLE_MAX_DENOMINATOR
            )
            self._up, self._down = ratio.numerator, ratio.denominator
            # half the anti-aliasing filter (inference.signal._polyphase_filter) in input and
            # output samples, plus a sample for rounding
            half = 10 * max(self._up, self._down)
            self._reach_in = math.ceil(half / self._up) + 2
            self._reach_out = math.ceil(half / self._down) + 2
        self.n_pushed = 0
        self.signal = np.empty(0)
        self.signal_start = 0  # a multiple of down
        self.n_done = 0

    def push(self, chunk: np.ndarray) -> list[StreamWindow]:
        self.signal = np.concatenate((self.signal, chunk))
        self.n_pushed += len(chunk)
        # output samples whose filter reach lies inside the signal pushed so far
        final_out = (self.n_pushed - self._reach_in) * self._up // self._down - self._reach_out
        n_ready = max(0, final_out // MODEL_WINDOW_SAMPLES)
        if n_ready <= self.n_done:
            return []
        resampled = self._resampled()
        first_out = self.signal_start * self._up // self._down
        pieces = [
            resampled[
                k * MODEL_WINDOW_SAMPLES - first_out : (k + 1) * MODEL_WINDOW_SAMPLES - first_out
            ]
            for k in range(self.n_done, n_ready)
        ]
        verdicts = self._classify(pieces, self.n_done, self.n_pushed, tail=False)
        self.n_done = n_ready
        # keep from the polyphase start before the next window's reach
        keep = self.n_done * MODEL_WINDOW_SAMPLES * self._down // self._up - self._reach_in
        keep = max(0, keep // self._down * self._down)
        if keep > self.signal_start:
            self.signal = self.signal[keep - self.signal_start :]
            self.signal_start = keep
        return verdicts

    def finish(self) -> list[StreamWindow]:
        if self.n_pushed < MIN_SIGNAL_S * self.fs_hz:
            return []  # the predictor refuses signals this short
        # the whole signal's resampled length, as inference.signal.resample makes it
        if self.fs_hz == WINDOW_FS_HZ:
            n_out = self.n_pushed
        else:
            n_out = max(1, round(self.n_pushed * WINDOW_FS_HZ / self.fs_hz))
        resampled = self._resampled()
        first_out = self.signal_start * self._up // self._down
        n_local = n_out - first_out
        if len(resampled) >= n_local:
            resampled = resampled[:n_local]
        else:
            resampled = np.pad(resampled, (0, n_local - len(resampled)), mode="edge")
        n_full = n_out // MODEL_WINDOW_SAMPLES
        pieces = [
            resampled[
                k * MODEL_WINDOW_SAMPLES - first_out : (k + 1) * MODEL_WINDOW_SAMPLES - first_out
            ]
            for k in range(self.n_done, n_full)
        ]
        tail = resampled[n_full * MODEL_WINDOW_SAMPLES - first_out :]
        with_tail = len(tail) >= MIN_TAIL_S * WINDOW_FS_HZ or n_full == 0
        if with_tail:
            pieces.append(np.pad(tail, (0, MODEL_WINDOW_SAMPLES - len(tail)), mode="edge"))
        verdicts = self._classify(pieces, self.n_done, self.n_pushed, tail=with_tail)
        self.n_done = n_full + int(with_tail)
        return verdicts

    def _resampled(self) -> np.ndarray:
        if self.fs_hz == WINDOW_FS_HZ:
            return self.signal.copy()
        return resample(self.signal, self.fs_hz, WINDOW_FS_HZ)

    def _classify(
        self, pieces: list[np.ndarray], first: int, n_samples: int, tail: bool
    ) -> list[StreamWindow]:
        if not pieces:
            return []
        predictor = self._predictor
        probabilities = predictor.probabilities(prepare_windows(np.stack(pieces), WINDOW_FS_HZ))
        verdicts = []
        for index, row in enumerate(probabilities):
            k = first + index
            start = round(k * MODEL_WINDOW_SAMPLES * self.fs_hz / WINDOW_FS_HZ)
            stop = round((k + 1) * MODEL_WINDOW_SAMPLES * self.fs_hz / WINDOW_FS_HZ)
            if tail and index == len(pieces) - 1:
                stop = n_samples
            verdicts.append(
                StreamWindow(
                    start_sample=start,
                    n_samples=min(stop, n_samples) - start,
                    label=predictor.classes[int(np.argmax(row))],
                    probabilities={
                        name: float(p) for name, p in zip(predictor.classes, row, strict=True)
                    },
                    model_name=predictor.name,
                    model_version=predictor.version,
                )
            )
        return verdicts

    SAVED = {"n_pushed": int, "signal": _floats, "signal_start": int, "n_done": int}

    @classmethod
    def from_state_dict(cls, state: dict) -> _WindowStage:
        stage = cls._saved(state, str(state["model_name"]))
        if (
            stage.signal_start % stage._down
            or stage.signal_start + len(stage.signal) != stage.n_pushed
        ):
            raise ValueError("window signal does not match the samples pushed")
        return stage
