"""Virtual ECG devices speaking protocol v1 over HTTP: for the demo, the tests and the benchmark.

Each virtual device behaves like the ESP32 firmware (``firmware/``): it samples a signal at
its declared rate, cuts it into chunks of ``chunk_s`` seconds, keeps every chunk in a retry
queue until the server acknowledges it, and posts one request at a time
(``docs/device-protocol.md``), each with the chunk's ``age_ms`` (how long ago its last sample was
made). The signal is a MIT-BIH record or excerpt (``mitdb:208``,
``mitdb:208@600`` from second 600) resampled to the device's rate, or a synthetic rhythm of
``inference.synthetic`` (``normal``, ``pvc``, ``af``, ``vt-run``, ...). Millivolts become ADC
units as the firmware's front end makes them: ``round(mv * gain + baseline)``, clipped to int16.

Faults are injected on the device's side, so that the server sees what a bad link does:

- ``drop``: a post fails (half of the time the request is lost on the way, half of the time
  the server stores it and the answer is lost); the chunk stays queued and is resent after
  ``retry_s``, so the server still gets it (and answers a resend of a stored chunk 200).
- ``duplicate``: an acknowledged chunk is posted once more.
- ``reorder``: a chunk is held back for 1.5 chunk periods, so a later one arrives first.
- ``lose``: a chunk is lost for good before it is sent (a buffer overflow): the server shows a gap.
- ``disconnect EVERY_S:FOR_S``: every EVERY_S seconds the link is down for FOR_S seconds; the
  queue fills and is drained after reconnecting.

As the firmware does, a failed post (no answer, 5xx, 408, 429) backs off the device's link: nothing
is posted until the backoff (and a 429's ``Retry-After``) has passed, then the oldest queued
chunk goes first. A device told ``409`` with ``"code": "new_session"`` (it was moved to another
patient, or its recording was closed) starts a new session and resends what it has not had
acknowledged there; 401 and 403 stop the device; any other refusal (a 3xx, or a 4xx other than
408 and 429, such as a 404) drops the chunk, logged as a warning at most once per
``REFUSAL_LOG_INTERVAL_S`` per device.

Times that belong to the device (chunk length, duration, retry wait, disconnects) are seconds
of signal, so ``speed`` scales them all; HTTP round trips are wall-clock times.

The HTTP client is aiohttp: one event loop drives hundreds of devices (the benchmark's 200 at
real time) without a thread per device.
"""

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import secrets
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from inference import synthetic
from inference.datasets import data_dir
from inference.datasets.mitdb import load_record
from inference.signal import resample
from monitoring.protocol import (
    BINARY_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    MAX_CHUNK_FRAMES,
    Chunk,
    encode_binary_chunk,
    encode_json_chunk,
)
from monitoring.samples import INT16_MAX, INT16_MIN

logger = logging.getLogger(__name__)

CHUNKS_PATH = "/api/device/v1/chunks/"
CLOSE_PATH = "/api/device/v1/recordings/close/"

DEFAULT_FS_HZ = 250.0  # the ESP32 firmware's rate
DEFAULT_GAIN_ADC_PER_MV = 200.0  # the demo devices' declared gain
FORMATS = ("json", "binary")

# Synthetic sources: name -> arguments of inference.synthetic.generate. Event counts that
# depend on the length ("per_min") are scaled to the generated strip.
SYNTHETIC_SOURCES = {
    "normal": {"rhythm": "NSR"},
    "pvc": {"rhythm": "NSR", "pvc_per_min": 6.0},
    "pac": {"rhythm": "NSR", "pac_per_min": 6.0},
    "af": {"rhythm": "AFIB"},
    "vt-run": {"rhythm": "NSR", "vt_runs_per_min": 1.0},
    "vt": {"rhythm": "VT"},
    # Pauses of 3.5-5 s and 135 bpm: each over the default alarm limits (3 s, 120 bpm) by a
    # margin, so that the demo sources show the alarm their name promises. The generator's
    # own defaults (2.5-3.5 s, 118 bpm) straddle those limits and trained the window model.
    "pause": {"rhythm": "NSR", "pauses_per_min": 1.0, "pause_range_s": (3.5, 5.0)},
    "brady": {"rhythm": "SBR"},
    "tachy": {"rhythm": "STACH", "hr_bpm": 135.0},
}
# A synthetic strip is generated up to this length and then replayed in a loop: ten minutes
# is enough variety for a demo and costs well under a second per device to generate.
SYNTHETIC_MAX_S = 600.0
# 4xx statuses after which a chunk is sent again (a timeout, a throttle): the server may take
# it later. Any other 4xx or 3xx refuses it for good (refused_for_good).
RETRIED_4XX_STATUSES = {408, 429}
# The code of a 409 that asks for a new session instead (monitoring.ingest.NEW_SESSION; not
# imported: the simulator runs without Django's models, as in the benchmark's processes).
NEW_SESSION_CODE = "new_session"
DROP_BACKLOG = "drop"  # monitoring.ingest.DROP_BACKLOG: what the device does, not the server
# A device logs its refused chunks at most once per this many seconds (wall time): a server
# refusing every chunk would otherwise log once per chunk.
REFUSAL_LOG_INTERVAL_S = 10.0
# Statuses after which the device stops: its token or its patient assignment is wrong.
FATAL_STATUSES = {401, 403}
# device time; well under DEVICE_OFFLINE_S (30 s), so that a server restart of 20 s does not
# become 30 s of silence and a "device offline" alarm (the cap was 30 s: a 17-s restart kept a
# device away 34 s). The firmware's kBackoffMaxMs is the same.
MAX_BACKOFF_S = 8.0
# The longest Retry-After a device waits (wall seconds), as the firmware caps it: a garbled or
# huge header must not park the device for days.
MAX_RETRY_AFTER_S = 3600.0


# What the server's 400 says of samples ahead of its clock (monitoring.ingest.
# check_not_ahead_of_time): "... a device cannot be more than 600 s ahead (...)".
AHEAD_OF_TIME_TEXT = "s ahead ("


def refused_for_good(status: int | str) -> bool:
    """Whether an answer refuses the chunk for good, so that the device drops it: resending
    the same bytes to the same address cannot help. As the firmware's
    ``is_retryable_status``: a 3xx, or a 4xx other than 408 and 429. That is 400, 409, 413
    and 415 (a device bug), and 404: no chunk endpoint at the server URL (it names another
    server, or misses a path prefix), or the recording a JSON chunk names does not exist
    (deleted). Resent, a 404 was posted for ever, the chunks queued behind it waiting too."""
    if not isinstance(status, int):  # "connection": no answer
        return False
    return 300 <= status < 500 and status not in RETRIED_4XX_STATUSES


# --- Signals ------------------------------------------------------------------------------


def to_adc(signal_mv: np.ndarray, gain_adc_per_mv: float, baseline_adc: int = 0) -> np.ndarray:
    """ADC units as the front end makes them: ``round(mv * gain + baseline)``, clipped to int16."""
    adc = np.round(np.asarray(signal_mv, dtype=np.float64) * gain_adc_per_mv + baseline_adc)
    return np.clip(adc, INT16_MIN, INT16_MAX).astype(np.int16)


def source_names() -> list[str]:
    return ["mitdb:RECORD", "mitdb:RECORD@START_S", *SYNTHETIC_SOURCES]


def load_source(
    spec: str,
    fs_hz: float,
    duration_s: float | None = None,
    data: str | Path | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The signal (mV, 1-D, at ``fs_hz``) a device replays, from a source spec.

    ``mitdb:208`` is record 208's MLII lead (the first lead of 102 and 104, which have none)
    from its start, ``mitdb:208@600`` from second 600; ``data`` is the folder holding
    ``mitdb/`` (default ``$CARDIOSPIKE_DATA_DIR`` or ../shared/data). A synthetic name
    (``normal``, ``pvc``, ``af``, ``vt-run``, ...) generates ``duration_s`` seconds (at most
    ten minutes, then replayed) with modest ambulatory noise; ``seed`` makes devices with the
    same source differ.
    Raises ``ValueError`` for an unknown spec and ``FileNotFoundError`` for missing data.
    """
    if spec.startswith("mitdb:"):
        record, _, start = spec.removeprefix("mitdb:").partition("@")
        try:
            start_s = float(start) if start else 0.0
        except ValueError:
            raise ValueError(f"source {spec!r}: the start after @ must be seconds") from None
        if not record or start_s < 0:
            raise ValueError(f"source {spec!r}: write mitdb:RECORD or mitdb:RECORD@START_S")
        return _mitdb_excerpt(record, start_s, fs_hz, data)
    if spec not in SYNTHETIC_SOURCES:
        raise ValueError(f"unknown source {spec!r}; use one of {', '.join(source_names())}")
    length_s = min(duration_s or SYNTHETIC_MAX_S, SYNTHETIC_MAX_S)
    length_s = max(length_s, 10.0)  # room for the events a kind promises
    arguments = dict(SYNTHETIC_SOURCES[spec])
    minutes = length_s / 60.0
    if "vt_runs_per_min" in arguments:
        arguments["vt_runs"] = max(1, round(arguments.pop("vt_runs_per_min") * minutes))
    if "pauses_per_min" in arguments:
        arguments["pauses"] = max(1, round(arguments.pop("pauses_per_min") * minutes))
    strip = synthetic.generate(
        length_s, fs=fs_hz, noise=synthetic.NoiseConfig.realistic(), seed=seed, **arguments
    )
    return strip.signal_mv


def _mitdb_excerpt(record: str, start_s: float, fs_hz: float, data: str | Path | None):
    folder = data_dir(data) / "mitdb"
    try:
        loaded = load_record(folder, record, lead="MLII")
    except ValueError:
        # records 102 and 104 have no MLII; their first lead (V5) is what the monitor showed
        import wfdb

        header = wfdb.rdheader(str(folder / record))
        loaded = load_record(folder, record, lead=header.sig_name[0])
    first = round(start_s * loaded.fs)
    if first >= len(loaded.signal_mv) - loaded.fs:
        raise ValueError(
            f"mitdb:{record} is {len(loaded.signal_mv) / loaded.fs:.0f} s long; "
            f"start {start_s:g} s leaves less than a second"
        )
    return resample(loaded.signal_mv[first:], loaded.fs, fs_hz)


# --- Configuration and results ------------------------------------------------------------


@dataclass(frozen=True)
class DeviceConfig:
    """One virtual device: its name (the serial), token and front end, and the server it
    posts to when not the simulation's (the benchmark spreads devices over processes)."""

    name: str
    token: str
    fs_hz: float = DEFAULT_FS_HZ
    gain_adc_per_mv: float = DEFAULT_GAIN_ADC_PER_MV
    baseline_adc: int = 0
    base_url: str = ""


@dataclass(frozen=True)
class Faults:
    """Fault probabilities per chunk (0-1) and the link's disconnect schedule (device s)."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    lose: float = 0.0
    disconnect_every_s: float = 0.0
    disconnect_for_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "lose"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"--{name} must be a probability between 0 and 1, got {value}")
        if self.drop == 1.0:
            raise ValueError("--drop 1 would never deliver a chunk; use a probability below 1")
        if self.disconnect_every_s and not 0 < self.disconnect_for_s < self.disconnect_every_s:
            raise ValueError("--disconnect EVERY_S:FOR_S needs 0 < FOR_S < EVERY_S")

    @staticmethod
    def parse_disconnect(text: str) -> tuple[float, float]:
        """``"30:5"`` -> (30.0, 5.0): down for 5 s every 30 s."""
        every, sep, down = text.partition(":")
        try:
            if not sep:
                raise ValueError
            return float(every), float(down)
        except ValueError:
            raise ValueError(
                f"--disconnect wants EVERY_S:FOR_S (e.g. 30:5), got {text!r}"
            ) from None

    def link_down(self, device_s: float) -> float:
        """Seconds (device time) until the link is up again at ``device_s``; 0 when it is up.

        The link is down during [k * every, k * every + for) for k >= 1.
        """
        if not self.disconnect_every_s or device_s < self.disconnect_every_s:
            return 0.0
        into = device_s % self.disconnect_every_s
        return self.disconnect_for_s - into if into < self.disconnect_for_s else 0.0


@dataclass(frozen=True)
class SimulationConfig:
    """How the devices run: server, pace, chunking, body format, faults and ending."""

    base_url: str
    chunk_s: float = 1.0
    speed: float = 1.0
    duration_s: float | None = None  # seconds of signal per device; None: until stopped
    body_format: str = "json"
    faults: Faults = field(default_factory=Faults)
    retry_s: float = 1.0  # device time before an unacknowledged chunk is resent
    close: bool = True  # close each device's recording at the end
    drain_timeout_s: float = 30.0  # wall time to deliver the queue after the signal ends
    stagger: bool = True  # spread the devices' first chunks over one chunk period
    keep_acks: bool = False  # keep one AckRecord per chunk (the benchmark's latency)
    seed: int = 0
    http_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.body_format not in FORMATS:
            raise ValueError(
                f"format must be one of {', '.join(FORMATS)}, got {self.body_format!r}"
            )
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if not self.chunk_s > 0:
            raise ValueError(f"chunk length must be positive, got {self.chunk_s} s")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration must be positive, got {self.duration_s} s")
        if not self.retry_s > 0:
            # a wait of 0 after a failed post would resend in a tight loop against a server
            # that is down or throttling
            raise ValueError(f"retry wait must be positive, got {self.retry_s} s")


@dataclass
class AckRecord:
    """One acknowledged chunk: its samples and when (``time.time()``) the answer came."""

    seq: int
    first_sample: int
    end_sample: int
    acked_at: float
    latency_s: float


@dataclass
class DeviceReport:
    """What one device did. ``posts`` counts HTTP requests, ``retries`` resends of a chunk
    after a failed attempt, ``errors`` failed attempts by HTTP status (or "connection",
    "dropped" for injected faults). ``session`` and ``recording`` are the last ones;
    ``new_sessions`` counts the sessions the server asked for (409 "new_session")."""

    name: str
    session: str
    recording: int | None = None
    chunks_made: int = 0
    chunks_acked: int = 0
    chunks_lost: int = 0  # the "lose" fault: never sent
    chunks_refused: int = 0  # 4xx that resending cannot fix
    # of those, the ones the server said were ahead of its clock (DEVICE_MAX_AHEAD_S): a
    # run faster than real time outgrows that limit (docs/simulator.md)
    chunks_ahead: int = 0
    chunks_unsent: int = 0  # still queued when the run ended
    # queued when the server said they were sampled for another stay (409 new_session with
    # "backlog": "drop": the device was moved, or its patient discharged): never sent
    chunks_dropped: int = 0
    posts: int = 0
    retries: int = 0
    duplicates_sent: int = 0
    reordered: int = 0
    samples_made: int = 0
    samples_acked: int = 0
    errors: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    acks: list[AckRecord] = field(default_factory=list)
    last_ack: dict = field(default_factory=dict)
    closed: bool = False
    stopped: str = ""  # why the device gave up early (401/403), else ""
    new_sessions: int = 0

    def as_dict(self) -> dict:
        latency = percentiles(self.latencies_s)
        return {
            "name": self.name,
            "session": self.session,
            "recording": self.recording,
            "chunks_made": self.chunks_made,
            "chunks_acked": self.chunks_acked,
            "chunks_lost": self.chunks_lost,
            "chunks_refused": self.chunks_refused,
            "chunks_ahead": self.chunks_ahead,
            "chunks_unsent": self.chunks_unsent,
            "chunks_dropped": self.chunks_dropped,
            "posts": self.posts,
            "retries": self.retries,
            "duplicates_sent": self.duplicates_sent,
            "reordered": self.reordered,
            "samples_made": self.samples_made,
            "samples_acked": self.samples_acked,
            "errors": dict(self.errors),
            "latency_p50_ms": latency["p50_ms"],
            "latency_p99_ms": latency["p99_ms"],
            "last_ack": self.last_ack,
            "closed": self.closed,
            "stopped": self.stopped,
            "new_sessions": self.new_sessions,
        }


def percentiles(values_s: list[float]) -> dict:
    """p50 and p99 in milliseconds (None without values)."""
    if not values_s:
        return {"p50_ms": None, "p99_ms": None}
    p50, p99 = np.percentile(np.asarray(values_s) * 1000.0, [50, 99])
    return {"p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1)}


# --- One device ---------------------------------------------------------------------------


@dataclass
class _Pending:
    """A queued chunk. ``seq`` and ``first_sample`` count from the device's start, the chunk's
    from its session's: they differ after the server asked for a new session."""

    seq: int
    first_sample: int
    chunk: Chunk
    not_before: float  # loop time
    attempts: int = 0


class VirtualDevice:
    """One device: a producer that samples in (scaled) real time into a retry queue, and a
    sender that posts the oldest sendable chunk, one request at a time, until acknowledged."""

    def __init__(
        self,
        config: DeviceConfig,
        samples_adc: np.ndarray,
        simulation: SimulationConfig,
        index: int = 0,
        n_devices: int = 1,
    ) -> None:
        if samples_adc.ndim != 1 or len(samples_adc) == 0:
            raise ValueError("a device replays a non-empty 1-D array of ADC samples")
        self.config = config
        self.samples_adc = samples_adc
        self.sim = simulation
        # Separate streams for the buffer's faults (lose, reorder) and the link's (drop,
        # duplicate): the producer and the sender interleave as timing decides, and with one
        # stream the same seed would hit different chunks from run to run.
        self.rng = np.random.default_rng([simulation.seed, index, 0])
        self.link_rng = np.random.default_rng([simulation.seed, index, 1])
        self.frames_per_chunk = round(simulation.chunk_s * config.fs_hz)
        if not 1 <= self.frames_per_chunk <= MAX_CHUNK_FRAMES:
            raise ValueError(
                f"a {simulation.chunk_s} s chunk at {config.fs_hz} Hz is {self.frames_per_chunk}"
                f" frames; the protocol allows 1 to {MAX_CHUNK_FRAMES}"
            )
        # seconds of wall time per chunk, and this device's phase within it
        self.period_wall_s = self.frames_per_chunk / config.fs_hz / simulation.speed
        self.offset_wall_s = self.period_wall_s * index / n_devices if simulation.stagger else 0.0
        # A new session per run, as the firmware draws one at boot: a seeded one would repeat
        # the last run's, which that run closed, and every chunk would answer 409.
        session = secrets.randbits(32)
        self.report = DeviceReport(name=config.name, session=f"{session:08x}")
        # the device's seq and sample of the session's first chunk (see start_new_session)
        self.session_first_seq = 0
        self.session_first_sample = 0
        self.session_started_by: int | None = None  # the device seq whose 409 started it
        # the device's seq and sample of the next chunk it will make (a session that drops
        # its backlog starts there)
        self.next_seq = 0
        self.next_sample = 0
        self.pending: dict[int, _Pending] = {}  # by the device's seq
        # The link's backoff, as the firmware keeps it: after a failed post (no answer, 5xx,
        # 429) nothing is posted until hold_until (loop time), whichever chunk is next. A
        # backoff per chunk let the next queued chunk go out at once: a throttled device kept
        # posting through its Retry-After, and a server that failed got every queued chunk,
        # newest before oldest.
        self.failures_in_row = 0
        self.hold_until = 0.0
        self.refusals_unlogged = 0
        self.refusal_logged_at: float | None = None  # time.monotonic()
        self.wake = asyncio.Event()
        self.producing = True
        self.drain_deadline: float | None = None
        self.base_url = (config.base_url or simulation.base_url).rstrip("/")
        self.headers = {"Authorization": f"Device {config.token}"}
        self.content_type = (
            JSON_CONTENT_TYPE if simulation.body_format == "json" else BINARY_CONTENT_TYPE
        )

    @property
    def total_frames(self) -> int | None:
        if self.sim.duration_s is None:
            return None
        return round(self.sim.duration_s * self.config.fs_hz)

    def device_seconds(self, loop_time: float) -> float:
        return (loop_time - self.started) * self.sim.speed

    def make_chunk(self, seq: int, first_sample: int, n_frames: int) -> Chunk:
        """The chunk of the device's ``seq``, numbered within the current session."""
        positions = (first_sample + np.arange(n_frames)) % len(self.samples_adc)
        elapsed_s = first_sample / self.config.fs_hz
        return Chunk(
            seq=seq - self.session_first_seq,
            first_sample=first_sample - self.session_first_sample,
            fs_hz=self.config.fs_hz,
            gain_adc_per_mv=self.config.gain_adc_per_mv,
            n_channels=1,
            samples=self.samples_adc[positions].reshape(-1, 1),
            session=self.report.session,
            baseline_adc=self.config.baseline_adc,
            # a battery that drains 1 % per ten minutes (BATTERY_LOW at 15 %, after about 14 h)
            battery_pct=max(5, 100 - int(elapsed_s // 600)),
        )

    def encode(self, chunk: Chunk) -> bytes:
        if self.sim.body_format == "json":
            return encode_json_chunk(chunk)
        return encode_binary_chunk(chunk)

    def body_to_send(self, item: _Pending) -> bytes:
        """The queued chunk's body as it leaves now, with its ``age_ms``: how long ago its last
        sample was made, as the firmware measures it before each post, so that the server
        dates a recording opened by a chunk that waited (a disconnect, a backoff) when it was
        sampled. Wall time: at ``speed`` 1 the device's own; a faster replay is no true clock
        anyway, and its ages stay as short as the waits really were."""
        end_sample = item.first_sample + item.chunk.n_frames
        made_at = self.started + end_sample / self.config.fs_hz / self.sim.speed
        age_s = max(0.0, asyncio.get_running_loop().time() - made_at)
        return self.encode(dataclasses.replace(item.chunk, age_ms=round(age_s * 1000.0)))

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> DeviceReport:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.offset_wall_s)
        self.started = loop.time()
        producer = asyncio.create_task(self.produce(stop))
        try:
            await self.send(http, stop)
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
        self.report.chunks_unsent = len(self.pending)
        if self.sim.close and self.report.recording is not None and not self.report.stopped:
            await self.close_recording(http)
        return self.report

    async def produce(self, stop: asyncio.Event) -> None:
        """Queue chunk k once its last sample has been 'sampled': at (k + 1) periods."""
        loop = asyncio.get_running_loop()
        seq, first_sample = 0, 0
        total = self.total_frames
        try:
            while total is None or first_sample < total:
                n_frames = self.frames_per_chunk
                if total is not None:
                    n_frames = min(n_frames, total - first_sample)
                due = self.started + (first_sample + n_frames) / self.config.fs_hz / self.sim.speed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, due - loop.time()))
                if stop.is_set():
                    # The frames sampled since the last chunk go out as a last, shorter chunk,
                    # so that the recording ends where the device stopped sampling.
                    sampled = int((loop.time() - self.started) * self.sim.speed * self.config.fs_hz)
                    n_frames = min(n_frames, sampled - first_sample)
                    if n_frames > 0:
                        self.queue_chunk(seq, first_sample, n_frames)
                    break
                self.queue_chunk(seq, first_sample, n_frames)
                seq += 1
                first_sample += n_frames
        finally:
            self.producing = False
            # after the signal ends (or a stop), the queue gets a bounded time to drain
            drain_s = (
                self.sim.drain_timeout_s
                if not stop.is_set()
                else min(self.sim.drain_timeout_s, 5.0)
            )
            self.drain_deadline = loop.time() + drain_s
            self.wake.set()

    def queue_chunk(self, seq: int, first_sample: int, n_frames: int) -> None:
        """Queue a freshly sampled chunk, with the buffer's faults (lose, reorder)."""
        loop = asyncio.get_running_loop()
        chunk = self.make_chunk(seq, first_sample, n_frames)
        item = _Pending(seq, first_sample, chunk, loop.time())
        self.next_seq, self.next_sample = seq + 1, first_sample + n_frames
        self.report.chunks_made += 1
        self.report.samples_made += n_frames
        if self.rng.random() < self.sim.faults.lose:
            self.report.chunks_lost += 1
            return
        if self.rng.random() < self.sim.faults.reorder:
            item.not_before += 1.5 * self.period_wall_s
            self.report.reordered += 1
        self.pending[item.seq] = item
        self.wake.set()

    async def send(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if not self.producing and (not self.pending or now >= self.drain_deadline):
                return
            down_s = self.sim.faults.link_down(self.device_seconds(now))
            if down_s > 0:
                await self._sleep_or_wake(down_s / self.sim.speed, wake_on_chunk=False)
                continue
            if self.hold_until > now:
                # backing off after a failed post; woken by a new chunk or the signal's end,
                # so that a stop still gets its (bounded) drain
                timeout = self.hold_until - now
                if not self.producing:
                    timeout = min(timeout, max(0.0, self.drain_deadline - now))
                await self._sleep_or_wake(timeout, wake_on_chunk=True)
                continue
            ready = [p for p in self.pending.values() if p.not_before <= now]
            if not ready:
                later = [p.not_before for p in self.pending.values()]
                timeout = min(later) - now if later else None
                if not self.producing:
                    timeout = min(timeout or 1.0, max(0.0, self.drain_deadline - now))
                await self._sleep_or_wake(timeout, wake_on_chunk=True)
                continue
            item = min(ready, key=lambda p: p.seq)
            await self.attempt(http, item)
            if self.report.stopped:
                return

    async def _sleep_or_wake(self, timeout_s: float | None, wake_on_chunk: bool) -> None:
        if not wake_on_chunk:
            await asyncio.sleep(timeout_s)
            return
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout_s)

    async def attempt(self, http: aiohttp.ClientSession, item: _Pending) -> None:
        """One try at delivering a queued chunk, with the faults that may hit it."""
        loop = asyncio.get_running_loop()
        report = self.report
        if item.attempts:
            report.retries += 1
        item.attempts += 1
        retry_wall_s = self.sim.retry_s / self.sim.speed
        body = self.body_to_send(item)
        if self.link_rng.random() < self.sim.faults.drop:
            report.errors["dropped"] += 1
            if self.link_rng.random() < 0.5:
                # the answer is lost: the server stores the chunk, the device never hears
                await self.post(http, CHUNKS_PATH, body, self.content_type)
            item.not_before = loop.time() + retry_wall_s
            return
        status, answer, latency_s, retry_after_s = await self.post(
            http, CHUNKS_PATH, body, self.content_type
        )
        if status in (200, 201):
            self.failures_in_row = 0
            self.acknowledged(item, answer, latency_s)
            if self.link_rng.random() < self.sim.faults.duplicate:
                report.duplicates_sent += 1
                status, _, _, _ = await self.post(http, CHUNKS_PATH, body, self.content_type)
                if status != 200:
                    report.errors[str(status)] += 1
            return
        report.errors[str(status)] += 1
        if status in FATAL_STATUSES:
            report.stopped = f"{status}: {answer.get('detail', answer)}"
            logger.warning("%s stopped: HTTP %s", self.config.name, report.stopped)
            return
        asks_new_session = status == 409 and answer.get("code") == NEW_SESSION_CODE
        if asks_new_session and self.session_started_by != item.seq:
            self.failures_in_row = 0
            self.start_new_session(item, answer)
            return
        if refused_for_good(status):
            self.failures_in_row = 0  # the server answered: the link itself is fine
            # a device bug or a wrong address, not a link problem: resending cannot help
            report.chunks_refused += 1
            if AHEAD_OF_TIME_TEXT in str(answer.get("detail", "")):
                report.chunks_ahead += 1
            report.last_ack = {"refused_seq": item.chunk.seq, "status": status, **answer}
            del self.pending[item.seq]
            self.log_refusal(item, status, answer)
            return
        # No answer, 5xx, 408, 429 (or another status outside 3xx-4xx): the link backs off,
        # 1, 2, 4, 8, 8 ... s of device time after the failures in a row, and at least as long
        # as the server's Retry-After (wall time: the server's clock); then the oldest
        # queued chunk goes first.
        self.failures_in_row += 1
        doublings = min(self.failures_in_row - 1, 6)
        wait_s = min(self.sim.retry_s * 2**doublings, MAX_BACKOFF_S) / self.sim.speed
        if retry_after_s is not None:
            wait_s = max(wait_s, retry_after_s)
        self.hold_until = loop.time() + wait_s
        item.not_before = self.hold_until

    def start_new_session(self, item: _Pending, answer: dict) -> None:
        """The server's 409 "new_session": a new session id, and every queued chunk numbered
        in it from the oldest (seq 0 at sample 0), to be resent there; gaps stay gaps. With
        ``"backlog": "drop"`` (the device was moved, or its patient discharged) the queued
        chunks were sampled for another stay: they are dropped, and the session starts with
        the next chunk made, as the firmware does (docs/device-protocol.md)."""
        refused = f"chunk {item.chunk.seq} of session {self.report.session}"
        self.report.session = f"{secrets.randbits(32):08x}"
        self.report.new_sessions += 1
        if answer.get("backlog") == DROP_BACKLOG:
            dropped = len(self.pending)
            dropped_s = sum(p.chunk.n_frames for p in self.pending.values()) / self.config.fs_hz
            self.pending.clear()
            self.report.chunks_dropped += dropped
            self.session_first_seq = self.next_seq
            self.session_first_sample = self.next_sample
            self.session_started_by = self.next_seq
            logger.warning(
                "%s: %s refused (%s); new session %s, %d queued chunks (%.1f s) dropped: "
                "sampled for another stay",
                self.config.name,
                refused,
                answer.get("detail", answer),
                self.report.session,
                dropped,
                dropped_s,
            )
            return
        oldest = min(self.pending.values(), key=lambda p: p.seq)
        self.session_first_seq = oldest.seq
        self.session_first_sample = oldest.first_sample
        self.session_started_by = item.seq
        for pending in self.pending.values():
            pending.chunk = self.make_chunk(
                pending.seq, pending.first_sample, pending.chunk.n_frames
            )
        logger.warning(
            "%s: %s refused (%s); new session %s, %d queued chunks to resend",
            self.config.name,
            refused,
            answer.get("detail", answer),
            self.report.session,
            len(self.pending),
        )

    def log_refusal(self, item: _Pending, status: int, answer: dict) -> None:
        """A warning for a refused chunk, at most one per ``REFUSAL_LOG_INTERVAL_S``."""
        self.refusals_unlogged += 1
        now = time.monotonic()
        if (
            self.refusal_logged_at is not None
            and now - self.refusal_logged_at < REFUSAL_LOG_INTERVAL_S
        ):
            return
        logger.warning(
            "%s: chunk %d of session %s refused with HTTP %s, dropped (%s); %d refused since "
            "the last warning",
            self.config.name,
            item.chunk.seq,
            self.report.session,
            status,
            answer.get("detail", answer),
            self.refusals_unlogged,
        )
        self.refusals_unlogged = 0
        self.refusal_logged_at = now

    def acknowledged(self, item: _Pending, answer: dict, latency_s: float) -> None:
        report = self.report
        report.latencies_s.append(latency_s)
        if self.pending.pop(item.seq, None) is None:
            return
        report.chunks_acked += 1
        report.samples_acked += item.chunk.n_frames
        report.recording = answer.get("recording", report.recording)
        report.last_ack = answer
        if self.sim.keep_acks:
            report.acks.append(
                AckRecord(
                    seq=item.chunk.seq,
                    first_sample=item.chunk.first_sample,
                    end_sample=item.chunk.end_sample,
                    acked_at=time.time(),
                    latency_s=latency_s,
                )
            )

    async def post(
        self, http: aiohttp.ClientSession, path: str, body: bytes, content_type: str
    ) -> tuple[int | str, dict, float, float | None]:
        """POST and read the answer: (status or "connection", JSON body, seconds, Retry-After)."""
        self.report.posts += 1
        headers = {**self.headers, "Content-Type": content_type}
        started = time.perf_counter()
        try:
            async with http.post(self.base_url + path, data=body, headers=headers) as response:
                # bytes, decoded leniently: a proxy's error page in another charset (or
                # garbage) is an answer to act on by its status, not a crash of the run
                text = (await response.read()).decode("utf-8", errors="replace")
                latency_s = time.perf_counter() - started
                try:
                    answer = json.loads(text) if text else {}
                except (ValueError, RecursionError):
                    answer = {"detail": text[:200]}
                if not isinstance(answer, dict):
                    answer = {"detail": answer}
                retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
                return response.status, answer, latency_s, retry_after_s
        except (aiohttp.ClientError, TimeoutError) as exc:
            return "connection", {"detail": str(exc) or type(exc).__name__}, 0.0, None

    async def close_recording(self, http: aiohttp.ClientSession) -> None:
        body = json.dumps({"session": self.report.session}).encode()
        status, answer, _, _ = await self.post(http, CLOSE_PATH, body, JSON_CONTENT_TYPE)
        if status == 200:
            self.report.closed = True
        else:
            self.report.errors[f"close {status}"] += 1


def parse_retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header, within 0 to ``MAX_RETRY_AFTER_S``; None when absent
    or not a number of seconds (an HTTP date, "inf", "nan": the backoff applies alone)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


# --- Many devices -------------------------------------------------------------------------


async def simulate(
    devices: list[DeviceConfig],
    signals_adc: list[np.ndarray],
    simulation: SimulationConfig,
    stop: asyncio.Event | None = None,
) -> list[DeviceReport]:
    """Run the devices concurrently until their signal ends (or ``stop`` is set)."""
    if len(devices) != len(signals_adc):
        raise ValueError("one signal per device")
    if not devices:
        raise ValueError("no devices to simulate")
    stop = stop or asyncio.Event()
    virtual = [
        VirtualDevice(config, samples, simulation, index, len(devices))
        for index, (config, samples) in enumerate(zip(devices, signals_adc, strict=True))
    ]
    # One connection per device, as each real device holds its own; no limit, so a slow
    # server shows as latency rather than as the client's queue.
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=simulation.http_timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        return list(await asyncio.gather(*(device.run(http, stop) for device in virtual)))


def prepare_signals(
    devices: list[DeviceConfig],
    sources: list[str],
    duration_s: float | None = None,
    data: str | Path | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """The ADC samples each device replays: device i takes ``sources[i % len(sources)]``,
    synthetic sources with seed ``seed + i`` so that no two devices show the same strip."""
    if not sources:
        raise ValueError("give at least one source")
    records: dict[tuple[str, float], np.ndarray] = {}  # a record is read once per rate
    signals = []
    for index, device in enumerate(devices):
        spec = sources[index % len(sources)]
        if spec.startswith("mitdb:"):
            key = (spec, device.fs_hz)
            if key not in records:
                records[key] = load_source(spec, device.fs_hz, duration_s, data)
            signal_mv = records[key]
        else:
            signal_mv = load_source(spec, device.fs_hz, duration_s, data, seed + index)
        signals.append(to_adc(signal_mv, device.gain_adc_per_mv, device.baseline_adc))
    return signals


def run_simulation(
    devices: list[DeviceConfig],
    signals_adc: list[np.ndarray],
    simulation: SimulationConfig,
) -> list[DeviceReport]:
    """``simulate`` in a fresh event loop; Ctrl-C or SIGTERM stops producing (the frames
    sampled since the last chunk go out as a shorter one), delivers what is queued (a few
    seconds at most), closes the recordings and returns the reports."""

    async def main() -> list[DeviceReport]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop.set)
        return await simulate(devices, signals_adc, simulation, stop)

    return asyncio.run(main())


def format_report(reports: list[DeviceReport], wall_s: float | None = None) -> str:
    """A table, one line per device, and the totals."""
    header = (
        f"{'device':<16} {'rec':>5} {'made':>6} {'acked':>6} {'retried':>7} {'dup':>4} "
        f"{'lost':>4} {'unsent':>6} {'samples acked':>13} {'p50 ms':>7} {'p99 ms':>7}  errors"
    )
    lines = [header, "-" * len(header)]
    for report in reports:
        latency = percentiles(report.latencies_s)
        errors = ", ".join(f"{key}: {count}" for key, count in sorted(report.errors.items()))
        if report.stopped:
            errors = f"{errors}; stopped ({report.stopped})" if errors else report.stopped
        lines.append(
            f"{report.name[:16]:<16} {report.recording or '-':>5} {report.chunks_made:>6} "
            f"{report.chunks_acked:>6} {report.retries:>7} {report.duplicates_sent:>4} "
            f"{report.chunks_lost:>4} {report.chunks_unsent:>6} {report.samples_acked:>13} "
            f"{_ms(latency['p50_ms']):>7} {_ms(latency['p99_ms']):>7}  {errors or '-'}"
        )
    all_latencies = [value for report in reports for value in report.latencies_s]
    total = percentiles(all_latencies)
    acked = sum(report.chunks_acked for report in reports)
    summary = (
        f"{len(reports)} devices: {sum(r.chunks_made for r in reports)} chunks made, {acked} "
        f"acknowledged, {sum(r.retries for r in reports)} retried, "
        f"{sum(r.samples_acked for r in reports)} of {sum(r.samples_made for r in reports)} "
        f"samples acknowledged; round trip p50 {_ms(total['p50_ms'])} ms, "
        f"p99 {_ms(total['p99_ms'])} ms"
    )
    if wall_s:
        summary += f"; {acked / wall_s:.1f} chunks/s over {wall_s:.1f} s"
    # what never reached the server's storage, said even when it is nothing: until
    # 2026-12-08 a run with 1,149 of 1,800 chunks refused printed only the totals above
    refused = sum(report.chunks_refused for report in reports)
    ahead = sum(report.chunks_ahead for report in reports)
    not_stored = (
        f"{refused} chunks refused for good"
        + (f" ({ahead} ahead of the server's time, DEVICE_MAX_AHEAD_S)" if ahead else "")
        + f", {sum(r.chunks_dropped for r in reports)} dropped (sampled for another stay), "
        f"{sum(r.chunks_lost for r in reports)} lost on purpose, "
        f"{sum(r.chunks_unsent for r in reports)} unsent"
    )
    return "\n".join([*lines, summary, not_stored])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# --- Devices from the database (the management command and the benchmark) ----------------

SIM_PREFIX = "SIM-"


def prepare_devices(count: int, use_demo: bool = True) -> list[DeviceConfig]:
    """Devices to simulate, with fresh tokens: the demo devices of ``seed_demo`` first (when
    ``use_demo`` and they exist, active and assigned), then simulated patients and devices
    ``SIM-001``, ``SIM-002``, ... created as needed (or reused) to make up ``count``.

    Issuing a token replaces the device's earlier one: a real device using these serials
    would be locked out, which is why only demo and SIM devices are ever touched.
    """
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from monitoring.demo import DEMO_CLINICIAN, DEMO_DEVICES, add_demo_recipients
    from monitoring.models import Device, Patient

    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    chosen: list[Device] = []
    with transaction.atomic():
        if use_demo:
            serials = [serial for serial, *_ in DEMO_DEVICES]
            by_serial = Device.objects.filter(
                serial__in=serials, is_active=True, patient__isnull=False
            ).in_bulk(field_name="serial")
            chosen = [by_serial[serial] for serial in serials if serial in by_serial][:count]
        clinician = get_user_model().objects.filter(username=DEMO_CLINICIAN).first()
        number = 0
        while len(chosen) < count:
            number += 1
            code = f"{SIM_PREFIX}{number:03d}"
            patient, created = Patient.objects.get_or_create(
                mrn=code,
                defaults={
                    "name": f"Simulated Patient {number}",
                    "ward": "Simulation",
                    "bed": str(number),
                    "notes": "Simulated patient (manage.py simulate_devices).",
                },
            )
            if created and clinician is not None:
                patient.clinicians.add(clinician)
            # as seed_demo does for the demo patients (and for SIM patients made before this)
            add_demo_recipients(patient)
            device, _ = Device.objects.get_or_create(
                serial=code,
                defaults={
                    "label": f"Simulated device {number}",
                    # one device per patient: a SIM patient given another device keeps it
                    "patient": None if patient.devices.exists() else patient,
                    "sampling_rate_hz": DEFAULT_FS_HZ,
                    "gain_adc_per_mv": DEFAULT_GAIN_ADC_PER_MV,
                    "firmware_version": "simulator",
                },
            )
            if device.is_active and device.patient_id is not None:
                chosen.append(device)
        return [
            DeviceConfig(
                name=device.serial,
                token=device.issue_token(),
                fs_hz=device.sampling_rate_hz,
                gain_adc_per_mv=device.gain_adc_per_mv,
            )
            for device in chosen
        ]
