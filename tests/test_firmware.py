"""The firmware's portable core: its host tests, and its encoder against the server's parser.

``make -C firmware test`` builds and runs the C++ unit tests (ring buffer, encoder, retry queue,
R-peak detector, and the sketch's HTTP glue against a model of the core's HTTPClient) and the
host tools. The C++ encoder's bodies must be the bytes the server's
own encoder writes and parse back to the same chunk; the on-screen R-peak detector is scored on
MIT-BIH records. Without g++ and make the tests skip, or fail when CI sets
``CARDIOSPIKE_REQUIRE_SERVICES=1``, so CI cannot go green by skipping them.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
import wfdb

from inference.aami import aami_class
from inference.beat_match import detection_scores
from monitoring.protocol import (
    MAX_CHUNK_AGE_MS,
    Chunk,
    ProtocolError,
    encode_binary_chunk,
    parse_binary_chunk,
    parse_json_chunk,
)
from tests.conftest import PROJECT_ROOT, services_required
from tests.inference.conftest import physionet_folder

FIRMWARE = PROJECT_ROOT / "firmware"
BUILD = FIRMWARE / "build"


def make(*targets: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-C", str(FIRMWARE), *targets],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def toolchain():
    missing = [tool for tool in ("g++", "make") if shutil.which(tool) is None]
    if missing:
        message = (
            f"the firmware's host build needs {' and '.join(missing)} (apt-get install g++ make)"
        )
        if services_required():
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def host_tools(toolchain):
    result = make("cli")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return BUILD


def test_it_passes_the_firmware_host_tests(toolchain):
    # the builds (each a single g++ run over all its sources) side by side, one per core
    result = make(f"-j{len(os.sched_getaffinity(0))}", "--output-sync=target", "test")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "0 failed checks" in result.stdout
    assert "FAIL" not in result.stdout
    # the sketch's own transport, against the model of the core's HTTPClient, ran too
    assert "ok   sketch_streams_through_a_wifi_drop_and_delivers_every_chunk_once" in result.stdout


# --- the encoder against the server's parser ---------------------------------------------


def cli_arguments(chunk: Chunk, body_format: str) -> list[str]:
    arguments = [
        "--format",
        body_format,
        "--session",
        chunk.session,
        "--seq",
        str(chunk.seq),
        "--first-sample",
        str(chunk.first_sample),
        # nine significant digits name the float32 exactly, so both encoders hold the same value
        "--fs-hz",
        f"{chunk.fs_hz:.9g}",
        "--gain",
        f"{chunk.gain_adc_per_mv:.9g}",
        "--baseline",
        str(chunk.baseline_adc),
        "--channels",
        str(chunk.n_channels),
    ]
    if chunk.battery_pct is not None:
        arguments += ["--battery", str(chunk.battery_pct)]
    if chunk.lead_off:
        arguments.append("--lead-off")
    if chunk.age_ms is not None:
        arguments += ["--age-ms", str(chunk.age_ms)]
    return arguments


def encode_with_firmware(tools, chunk: Chunk, body_format: str) -> bytes:
    result = subprocess.run(
        [str(tools / "encode_chunk"), *cli_arguments(chunk, body_format)],
        input=" ".join(str(v) for v in chunk.samples.ravel()).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def random_chunk(rng: np.random.Generator, n_channels: int) -> Chunk:
    n_frames = int(rng.integers(1, 1200))
    samples = rng.integers(-32768, 32768, size=(n_frames, n_channels)).astype(np.int16)
    # the extremes of int16 at both ends of the chunk
    samples.flat[0] = -32768
    samples.flat[-1] = 32767
    return Chunk(
        seq=int(rng.integers(0, 2**32)),
        first_sample=int(rng.integers(0, 2**40)),
        fs_hz=float(np.float32(rng.uniform(100, 2000))),
        gain_adc_per_mv=float(np.float32(rng.uniform(0.5, 5000))),
        n_channels=n_channels,
        samples=samples,
        session=f"{int(rng.integers(0, 2**32)):08x}",
        baseline_adc=int(rng.integers(-32768, 32768)),
        battery_pct=None if rng.random() < 0.3 else int(rng.integers(0, 101)),
        lead_off=bool(rng.random() < 0.5),
        # the firmware always sends it; without it the body is as before
        age_ms=None if rng.random() < 0.3 else int(rng.integers(0, MAX_CHUNK_AGE_MS + 1)),
    )


def assert_same_chunk(parsed: Chunk, sent: Chunk) -> None:
    assert parsed.session == sent.session
    assert (parsed.seq, parsed.first_sample) == (sent.seq, sent.first_sample)
    assert parsed.n_channels == sent.n_channels
    assert parsed.baseline_adc == sent.baseline_adc
    assert parsed.battery_pct == sent.battery_pct
    assert parsed.lead_off is sent.lead_off
    assert parsed.age_ms == sent.age_ms
    # JSON carries the float32 as nine digits, binary as the float32 itself
    assert np.float32(parsed.fs_hz) == np.float32(sent.fs_hz)
    assert np.float32(parsed.gain_adc_per_mv) == np.float32(sent.gain_adc_per_mv)
    assert parsed.samples.dtype == np.int16
    np.testing.assert_array_equal(parsed.samples, sent.samples)


@pytest.mark.parametrize("n_channels", [1, 3])
def test_it_writes_binary_chunks_byte_for_byte_as_the_server_does(host_tools, rng, n_channels):
    for _ in range(6):
        chunk = random_chunk(rng, n_channels)
        body = encode_with_firmware(host_tools, chunk, "binary")
        assert body == encode_binary_chunk(chunk)
        assert_same_chunk(parse_binary_chunk(body), chunk)


@pytest.mark.parametrize("n_channels", [1, 3])
def test_it_writes_json_chunks_the_server_parses_to_the_same_chunk(host_tools, rng, n_channels):
    for _ in range(6):
        chunk = random_chunk(rng, n_channels)
        assert_same_chunk(parse_json_chunk(encode_with_firmware(host_tools, chunk, "json")), chunk)


def test_it_writes_the_documented_example_and_a_corrupted_copy_is_refused(host_tools):
    chunk = Chunk(
        seq=0,
        first_sample=0,
        fs_hz=250.0,
        gain_adc_per_mv=float(np.float32(1241.2)),
        n_channels=1,
        samples=np.full((250, 1), 2048, dtype=np.int16),
        session="9f3a61c2",
        baseline_adc=2048,
        battery_pct=87,
    )
    body = encode_with_firmware(host_tools, chunk, "binary")
    assert len(body) == 542  # "one second of one lead at 250 Hz is 542 bytes"
    corrupted = bytearray(body)
    corrupted[100] ^= 0x01
    with pytest.raises(ProtocolError, match="CRC-32"):
        parse_binary_chunk(bytes(corrupted))


def test_it_refuses_a_sample_outside_int16_instead_of_wrapping_it(host_tools):
    result = subprocess.run(
        [str(host_tools / "encode_chunk"), "--format", "binary", "--session", "1"]
        + ["--seq", "0", "--first-sample", "0", "--fs-hz", "250", "--gain", "100"],
        input=b"1 2 32768",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"32767" in result.stderr and result.stdout == b""


# --- the on-screen R-peak detector on real ECG ---------------------------------------------


@pytest.fixture(scope="module")
def mitdb():
    return physionet_folder("mitdb", "100")


def detect_with_firmware(tools, signal_adc: np.ndarray, fs_hz: float) -> tuple[np.ndarray, float]:
    result = subprocess.run(
        [str(tools / "detect_peaks"), f"{fs_hz:g}"],
        input=" ".join(str(v) for v in signal_adc).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().split()
    assert lines[-2] == "hr_bpm"
    return np.array(lines[:-2], dtype=np.int64), float(lines[-1])


# Normal rhythm, PVCs, bigeminy (119), frequent multiform PVCs (208), AF (210).
@pytest.mark.parametrize("record", ["100", "101", "106", "119", "208", "210"])
def test_it_finds_the_beats_of_mitbih_records(host_tools, mitdb, record):
    header = wfdb.rdheader(str(mitdb / record))
    signal = wfdb.rdrecord(str(mitdb / record), channels=[0], physical=False).d_signal[:, 0]
    annotation = wfdb.rdann(str(mitdb / record), "atr")
    reference = np.array(
        [s for s, sym in zip(annotation.sample, annotation.symbol, strict=True) if aami_class(sym)]
    )
    peaks, hr_bpm = detect_with_firmware(host_tools, signal, header.fs)
    # the detector learns its levels in the first 2 s; score from there on
    start = int(2.2 * header.fs)
    scores = detection_scores(reference[reference >= start], peaks[peaks >= start], header.fs)
    assert scores["se"] >= 0.99, scores
    assert scores["ppv"] >= 0.98, scores
    # the rate on screen at the end: the median of the last eight reference RR intervals
    rr_s = np.diff(reference[-9:]) / header.fs
    assert abs(hr_bpm - 60.0 / np.median(rr_s)) <= 5.0
