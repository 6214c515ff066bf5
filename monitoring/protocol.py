"""Device protocol v1: the chunk a device posts, in JSON or in the compact binary body.

This module only turns request bodies into :class:`Chunk` objects (and back, for the device
simulator and the tests); it knows nothing of the database. ``monitoring.ingest`` decides what
a chunk means for a recording. The wire format is documented in ``docs/device-protocol.md``;
the firmware's C++ encoder (``firmware/lib``) writes the same bytes.

Both bodies carry the same fields. Every error is a :class:`ProtocolError` that names the field
and carries the HTTP status to answer with (400 malformed, 413 too large, 415 unknown type).
"""

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from monitoring.samples import (
    INT16_MAX,
    INT16_MIN,
    MAX_GAIN_ADC_PER_MV,
    MIN_GAIN_ADC_PER_MV,
)

PROTOCOL_VERSION = 1
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/vnd.cardiospike.chunk"

# A chunk holds at most this many frames (10 s at 500 Hz, 20 s at the ESP32's 250 Hz): a
# device posts about one second at a time, and anything larger is a bug or an attack.
MAX_CHUNK_FRAMES = 5000
MAX_CHANNELS = 16
# The largest body that can be valid: 5000 frames x 16 channels as JSON numbers ("-32768,")
# is about 560 kB. Bodies above this answer 413 before they are parsed.
MAX_BODY_BYTES = 640 * 1024
MAX_SESSION_CHARS = 64
# A chunk's age_ms (how long before it was sent its last sample was taken) may be at most an
# hour: thirty times the firmware's 120-s ring. A device's buffer does not hold more; an age
# beyond it is a clock or encoding bug, and it would date a recording's start that far back.
MAX_CHUNK_AGE_MS = 3_600_000
# A chunk's gain outside MIN/MAX_GAIN_ADC_PER_MV (Recording.gain_adc_per_mv's limits, which
# objects.create does not apply) answers 400 rather than being stored.

# Binary layout, little-endian (docs/device-protocol.md):
#   magic "CSK1", version u8, flags u8 (bit 0 lead off, bit 1 battery present), channels u8,
#   reserved u8, session u32, seq u32, first_sample u64, fs_hz f32, gain_adc_per_mv f32,
#   baseline_adc i16, battery_pct u8, reserved u8, n_frames u16,
#   then n_frames x channels int16 samples (frame by frame), then age_ms u32 when flag bit 2 is
#   set, then CRC-32 (zlib) of all before.
BINARY_MAGIC = b"CSK1"
BINARY_HEADER = struct.Struct("<4sBBBBIIQffhBBH")
BINARY_AGE = struct.Struct("<I")
BINARY_CRC = struct.Struct("<I")
FLAG_LEAD_OFF = 0x01
FLAG_BATTERY = 0x02
FLAG_AGE = 0x04


class ProtocolError(ValueError):
    """A chunk that cannot be accepted, with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Chunk:
    """One posted chunk, validated for form (not yet against its recording)."""

    seq: int
    first_sample: int
    fs_hz: float
    gain_adc_per_mv: float
    n_channels: int
    samples: np.ndarray  # int16, shape (n_frames, n_channels)
    session: str = ""
    baseline_adc: int = 0
    battery_pct: int | None = None
    lead_off: bool = False
    recording_id: int | None = None  # JSON only: the recording an explicit open returned
    # how long before the chunk was sent its last sample was taken, by the device's clock;
    # None: not sent (the server then takes the chunk as just sampled)
    age_ms: int | None = None

    @property
    def n_frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def end_sample(self) -> int:
        return self.first_sample + self.n_frames


def _check_common(
    seq: int, first_sample: int, fs_hz: float, gain: float, n_channels: int, n_values: int
) -> None:
    if seq < 0 or seq > 2**32 - 1:
        raise ProtocolError(f"seq must be between 0 and 4294967295, got {seq}")
    if first_sample < 0 or first_sample > 2**53:
        raise ProtocolError(f"first_sample must be a non-negative sample index, got {first_sample}")
    if not math.isfinite(fs_hz) or fs_hz <= 0:
        raise ProtocolError(f"fs_hz must be a positive number, got {fs_hz}")
    if not (math.isfinite(gain) and MIN_GAIN_ADC_PER_MV <= gain <= MAX_GAIN_ADC_PER_MV):
        raise ProtocolError(
            f"gain_adc_per_mv must be between {MIN_GAIN_ADC_PER_MV:g} and "
            f"{MAX_GAIN_ADC_PER_MV:g} ADC units per mV, got {gain:g}"
        )
    if not 1 <= n_channels <= MAX_CHANNELS:
        raise ProtocolError(f"n_channels must be between 1 and {MAX_CHANNELS}, got {n_channels}")
    if n_values == 0:
        raise ProtocolError("samples is empty: a chunk holds at least one frame")
    if n_values % n_channels:
        raise ProtocolError(
            f"{n_values} samples is not a whole number of {n_channels}-channel frames"
        )
    if n_values // n_channels > MAX_CHUNK_FRAMES:
        raise ProtocolError(
            f"{n_values // n_channels} frames in one chunk; at most {MAX_CHUNK_FRAMES} allowed",
            status=413,
        )


# --- JSON ---------------------------------------------------------------------------------

_JSON_FIELDS = {
    "seq",
    "first_sample",
    "fs_hz",
    "gain_adc_per_mv",
    "n_channels",
    "samples",
    "session",
    "baseline_adc",
    "battery_pct",
    "lead_off",
    "version",
    "recording",
    "age_ms",
}


def _integer(body: dict, name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if value is None:
        raise ProtocolError(f"{name} is required")
    # bool is an int in Python; a device sending true for a sequence number has a bug
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{name} must be an integer, got {json.dumps(value)[:40]}")
    return value


def _number(body: dict, name: str) -> float:
    value = body.get(name)
    if value is None:
        raise ProtocolError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{name} must be a number, got {json.dumps(value)[:40]}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range; 1e999 reads as inf, refused later
        raise ProtocolError(
            f"{name} must be a finite number, got an integer of {len(str(value))} digits"
        ) from None


# A field whose value is one of the constants Python's parser reads but JSON does not have.
_CONSTANT_FIELD = re.compile(rb'"([A-Za-z_][A-Za-z0-9_]{0,63})"\s*:\s*(NaN|-?Infinity)\b')


def load_json_object(body: bytes) -> dict:
    """A JSON body that must be an object, or ``ProtocolError`` (400) saying why not."""
    try:
        # NaN and Infinity are not JSON; Python's parser accepts them unless told not to
        data = json.loads(body, parse_constant=_refuse_constant)
    except ProtocolError as exc:
        # the parser does not say where: name the field when one holds the constant (a
        # sample inside the list is not a field, and keeps the plain message)
        found = _CONSTANT_FIELD.search(body) if isinstance(body, bytes) else None
        if found is None:
            raise
        name, constant = (part.decode() for part in found.groups())
        raise ProtocolError(f"{name} is {constant}, not a number JSON allows") from exc
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of over 4,300 digits
        raise ProtocolError(f"malformed JSON: {exc}") from None
    except RecursionError:  # a few kB of "[[[[..." exhaust Python's decoder
        raise ProtocolError("malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("the body must be a JSON object")
    return data


def parse_json_chunk(body: bytes) -> Chunk:
    """A chunk from a JSON body (``docs/device-protocol.md``); raises ``ProtocolError``."""
    if len(body) > MAX_BODY_BYTES:
        raise ProtocolError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}", status=413)
    data = load_json_object(body)
    unknown = sorted(set(data) - _JSON_FIELDS)
    if unknown:
        raise ProtocolError(f"unknown field(s): {', '.join(unknown)}")
    version = _integer(data, "version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version} is not supported (this server: 1)")
    seq = _integer(data, "seq")
    first_sample = _integer(data, "first_sample")
    fs_hz = _number(data, "fs_hz")
    gain = _number(data, "gain_adc_per_mv")
    n_channels = _integer(data, "n_channels", 1)
    samples = data.get("samples")
    if not isinstance(samples, list):
        raise ProtocolError("samples must be a list of integers (channels interleaved)")
    _check_common(seq, first_sample, fs_hz, gain, n_channels, len(samples))
    for position, value in enumerate(samples):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(
                f"samples[{position}] must be an integer ADC value, got {json.dumps(value)[:40]}"
            )
        if not INT16_MIN <= value <= INT16_MAX:
            raise ProtocolError(
                f"samples[{position}] = {value} is outside the int16 range "
                f"[{INT16_MIN}, {INT16_MAX}]"
            )
    session = data.get("session", "")
    if not isinstance(session, str) or len(session) > MAX_SESSION_CHARS:
        raise ProtocolError(f"session must be a string of at most {MAX_SESSION_CHARS} characters")
    baseline = _integer(data, "baseline_adc", 0)
    if not INT16_MIN <= baseline <= INT16_MAX:
        raise ProtocolError(f"baseline_adc = {baseline} is outside the int16 range")
    battery = data.get("battery_pct")
    if battery is not None:
        battery = _integer(data, "battery_pct")
        if not 0 <= battery <= 100:
            raise ProtocolError(f"battery_pct must be 0-100, got {battery}")
    lead_off = data.get("lead_off", False)
    if not isinstance(lead_off, bool):
        raise ProtocolError("lead_off must be true or false")
    recording_id = data.get("recording")
    if recording_id is not None:
        recording_id = _integer(data, "recording")
    age_ms = data.get("age_ms")
    if age_ms is not None:
        age_ms = _integer(data, "age_ms")
        check_age_ms(age_ms)
    return Chunk(
        seq=seq,
        first_sample=first_sample,
        fs_hz=fs_hz,
        gain_adc_per_mv=gain,
        n_channels=n_channels,
        samples=np.asarray(samples, dtype=np.int16).reshape(-1, n_channels),
        session=session,
        baseline_adc=baseline,
        battery_pct=battery,
        lead_off=lead_off,
        recording_id=recording_id,
        age_ms=age_ms,
    )


def check_age_ms(age_ms: int) -> None:
    """``ProtocolError`` for an age the device cannot have measured (``MAX_CHUNK_AGE_MS``)."""
    if not 0 <= age_ms <= MAX_CHUNK_AGE_MS:
        raise ProtocolError(
            f"age_ms must be 0 to {MAX_CHUNK_AGE_MS} (the milliseconds between the chunk's last "
            f"sample and its sending, at most an hour), got {age_ms}"
        )


def _refuse_constant(name: str):
    raise ProtocolError(f"{name} is not a number JSON allows; send integers")


def encode_json_chunk(chunk: Chunk) -> bytes:
    """The JSON body of a chunk (for the simulator and the tests)."""
    body = {
        "version": PROTOCOL_VERSION,
        "session": chunk.session,
        "seq": chunk.seq,
        "first_sample": chunk.first_sample,
        "fs_hz": chunk.fs_hz,
        "gain_adc_per_mv": chunk.gain_adc_per_mv,
        "baseline_adc": chunk.baseline_adc,
        "n_channels": chunk.n_channels,
        "samples": np.asarray(chunk.samples).reshape(-1).astype(int).tolist(),
        "lead_off": chunk.lead_off,
    }
    if chunk.battery_pct is not None:
        body["battery_pct"] = chunk.battery_pct
    if chunk.recording_id is not None:
        body["recording"] = chunk.recording_id
    if chunk.age_ms is not None:
        body["age_ms"] = chunk.age_ms
    return json.dumps(body, separators=(",", ":")).encode()


# --- Binary -------------------------------------------------------------------------------


def parse_binary_chunk(body: bytes) -> Chunk:
    """A chunk from the compact binary body; raises ``ProtocolError``."""
    if len(body) > MAX_BODY_BYTES:
        raise ProtocolError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}", status=413)
    minimum = BINARY_HEADER.size + BINARY_CRC.size
    if len(body) < minimum:
        raise ProtocolError(
            f"binary chunk of {len(body)} bytes is shorter than its {minimum}-byte frame"
        )
    (
        magic,
        version,
        flags,
        n_channels,
        _reserved,
        session,
        seq,
        first_sample,
        fs_hz,
        gain,
        baseline,
        battery,
        _reserved2,
        n_frames,
    ) = BINARY_HEADER.unpack_from(body)
    if magic != BINARY_MAGIC:
        raise ProtocolError(f"binary chunk must start with {BINARY_MAGIC!r}, got {magic!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version} is not supported (this server: 1)")
    (crc,) = BINARY_CRC.unpack_from(body, len(body) - BINARY_CRC.size)
    if zlib.crc32(body[: -BINARY_CRC.size]) != crc:
        raise ProtocolError("CRC-32 mismatch: the chunk was corrupted on the way")
    if not 1 <= n_channels <= MAX_CHANNELS:
        raise ProtocolError(f"n_channels must be between 1 and {MAX_CHANNELS}, got {n_channels}")
    age_bytes = BINARY_AGE.size if flags & FLAG_AGE else 0
    data_bytes = len(body) - BINARY_HEADER.size - age_bytes - BINARY_CRC.size
    expected = n_frames * n_channels * 2
    if data_bytes != expected:
        after = f" and {age_bytes} bytes of age_ms (flag bit 2)" if age_bytes else ""
        raise ProtocolError(
            f"header says {n_frames} frames x {n_channels} channels ({expected} bytes of "
            f"samples{after}) but the body carries {data_bytes} bytes of samples"
        )
    _check_common(seq, first_sample, fs_hz, gain, n_channels, n_frames * n_channels)
    samples = np.frombuffer(
        body, dtype="<i2", count=n_frames * n_channels, offset=BINARY_HEADER.size
    )
    if battery != 255 and battery > 100:
        raise ProtocolError(f"battery_pct must be 0-100 (255 for unknown), got {battery}")
    age_ms = None
    if age_bytes:
        (age_ms,) = BINARY_AGE.unpack_from(body, BINARY_HEADER.size + expected)
        check_age_ms(age_ms)
    return Chunk(
        seq=seq,
        first_sample=first_sample,
        fs_hz=float(fs_hz),
        gain_adc_per_mv=float(gain),
        n_channels=n_channels,
        samples=samples.astype(np.int16).reshape(n_frames, n_channels),
        session=f"{session:08x}",
        baseline_adc=baseline,
        # 255 is "unknown" whatever the flag says: not a charge of 255 %
        battery_pct=battery if flags & FLAG_BATTERY and battery != 255 else None,
        lead_off=bool(flags & FLAG_LEAD_OFF),
        age_ms=age_ms,
    )


def encode_binary_chunk(chunk: Chunk) -> bytes:
    """The binary body of a chunk. ``session`` must be 8 hex digits (a u32) or empty."""
    session = int(chunk.session, 16) if chunk.session else 0
    flags = (
        (FLAG_LEAD_OFF if chunk.lead_off else 0)
        | (FLAG_BATTERY if chunk.battery_pct is not None else 0)
        | (FLAG_AGE if chunk.age_ms is not None else 0)
    )
    samples = np.asarray(chunk.samples, dtype="<i2").reshape(-1, chunk.n_channels)
    header = BINARY_HEADER.pack(
        BINARY_MAGIC,
        PROTOCOL_VERSION,
        flags,
        chunk.n_channels,
        0,
        session,
        chunk.seq,
        chunk.first_sample,
        chunk.fs_hz,
        chunk.gain_adc_per_mv,
        chunk.baseline_adc,
        chunk.battery_pct if chunk.battery_pct is not None else 255,
        0,
        samples.shape[0],
    )
    payload = header + samples.tobytes()
    if chunk.age_ms is not None:
        payload += BINARY_AGE.pack(chunk.age_ms)
    return payload + BINARY_CRC.pack(zlib.crc32(payload))


def parse_chunk(body: bytes, content_type: str) -> Chunk:
    """Dispatch on the request's content type (parameters such as charset are ignored)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == JSON_CONTENT_TYPE:
        return parse_json_chunk(body)
    if media_type == BINARY_CONTENT_TYPE:
        return parse_binary_chunk(body)
    raise ProtocolError(
        f"unsupported content type {media_type or '(none)'!r}: send {JSON_CONTENT_TYPE} or "
        f"{BINARY_CONTENT_TYPE}",
        status=415,
    )
