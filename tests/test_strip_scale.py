"""The PNG strips keep the paper's scale (monitoring.strips, docs/review.md "Scale"): 25 mm/s,
10 mm/mV unless the signal is too tall for it (then 5 or 2.5), square 1 mm / 5 mm squares, a
1 mV calibration pulse at the gain used and the scale written under the strip; leads-off
spans and gaps under labelled bands. Measured on the PNG's pixels.

Before 2026-12-07 the amplitude was scaled to fit each strip (found by an exploratory test at
100 dpi: 1 mV measured 253 px for a 0.3 mV square wave, 130 px for 1 mV, 43 px for 3 mV; a
1 mV and a 3 mV square wave came out the same height; large squares 18 px wide and 16-126 px
tall), a 60-s strip ran at 12 mm/s, there was no calibration pulse nor scale, and a leads-off
stretch was a plain flat line (an asystole to the reader of an alarm e-mail).
"""

import io

import numpy as np
import pytest
from PIL import Image

from monitoring import strips
from monitoring.models import AnalysisStatus, Recording, SampleChunk
from monitoring.strips import render_range_png

pytestmark = pytest.mark.django_db

FS_HZ = 250.0  # the conftest recording: 250 Hz, 200 ADC units per mV
PX_PER_MM = strips.PNG_PX_PER_MM
ROW_MM = strips.LABEL_BAND_MM + strips.ROW_PAPER_MM + strips.TICK_BAND_MM


def store(recording, signal_mv: np.ndarray, seq: int = 0, first_sample: int = 0, **flags):
    adc = np.round(np.asarray(signal_mv) * recording.gain_adc_per_mv).astype(np.int16)
    chunk = SampleChunk.from_samples(recording, seq, first_sample, adc)
    for name, value in flags.items():
        setattr(chunk, name, value)
    chunk.save()


def square_wave(amplitude_mv: float, seconds: float) -> np.ndarray:
    """0 mV in the first second of every two, ``amplitude_mv`` in the second."""
    t_s = np.arange(round(seconds * FS_HZ)) / FS_HZ
    return np.where((t_s % 2.0) < 1.0, 0.0, amplitude_mv)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def paper_rows(row: int = 0) -> tuple[int, int]:
    """The pixel rows (top, bottom) of a strip row's paper."""
    top = round((strips.TITLE_MM + row * ROW_MM + strips.LABEL_BAND_MM) * PX_PER_MM)
    return top, top + round(strips.ROW_PAPER_MM * PX_PER_MM)


def x_px(mm: float) -> int:
    return round(mm * PX_PER_MM)


def trace_x(seconds_into_row: float) -> int:
    return x_px(strips.LEFT_MM + seconds_into_row * strips.PAPER_SPEED_MM_PER_S)


def level(image: np.ndarray, x: int, row: int = 0) -> float:
    """The trace's height (pixel row) in column x of a strip row: its dark pixels' middle."""
    top, bottom = paper_rows(row)
    dark = np.flatnonzero(image[top + 1 : bottom, x].max(axis=1) < 90)
    assert dark.size, f"no trace in column {x}"
    return top + 1 + dark.mean()


def step_px(image: np.ndarray, row: int = 0) -> float:
    """How far the square wave's high plateau (1.5 s into the row) is above its low (0.5 s)."""
    return level(image, trace_x(0.5), row) - level(image, trace_x(1.5), row)


def pulse_px(image: np.ndarray, row: int = 0) -> float:
    """The calibration pulse's height: its top (the middle of its 5 mm) over its foot."""
    left = strips.LEFT_MM - strips.CAL_MM + 1.0  # where the pulse's drawing starts
    return level(image, x_px(left + 0.5), row) - level(image, x_px(left + 4.0), row)


def line_centres(reds: np.ndarray) -> np.ndarray:
    """The middles of the runs of True (a grid line anti-aliased over one or two pixels)."""
    edges = np.diff(np.r_[0, reds.astype(int), 0])
    return (np.flatnonzero(edges == 1) + np.flatnonzero(edges == -1) - 1) / 2


def major_lines(values: np.ndarray) -> np.ndarray:
    """Where the paper's 5-mm lines (#f29c9c) cross a line of pixels; the 1-mm lines
    (#fbd5d5) and the white are much less red."""
    return line_centres((values[:, 0] - values[:, 1]) > 50)


@pytest.mark.parametrize("amplitude_mv", [0.3, 1.0, 3.0])
def test_a_millivolt_is_ten_millimetres_whatever_the_signal(recording, amplitude_mv):
    store(recording, square_wave(amplitude_mv, 10.0))
    png = render_range_png(recording, 0, round(10 * FS_HZ))
    image = pixels(png)
    px_per_mv = 10 * PX_PER_MM  # 10 mm/mV
    assert step_px(image) == pytest.approx(amplitude_mv * px_per_mv, abs=2)
    assert pulse_px(image) == pytest.approx(px_per_mv, abs=2)  # 1 mV at the gain used
    assert Image.open(io.BytesIO(png)).info["Description"] == "25 mm/s · 10 mm/mV"


def test_a_signal_too_tall_for_ten_millimetres_a_millivolt_is_drawn_at_five(recording):
    """As an ECG machine's automatic gain: the next smaller step, said and calibrated. (A
    6 mV spike near the square wave made 1 mV 33 px at 100 dpi, and nothing said so.)"""
    signal = square_wave(1.0, 10.0)
    signal[round(5.5 * FS_HZ)] = 6.0
    store(recording, signal)
    png = render_range_png(recording, 0, round(10 * FS_HZ))
    image = pixels(png)
    assert step_px(image) == pytest.approx(5 * PX_PER_MM, abs=2)
    assert pulse_px(image) == pytest.approx(5 * PX_PER_MM, abs=2)
    assert Image.open(io.BytesIO(png)).info["Description"] == "25 mm/s · 5 mm/mV"


def test_the_paper_runs_at_25_mm_a_second_on_square_squares(recording):
    store(recording, square_wave(1.0, 10.0))
    png = render_range_png(recording, 0, round(10 * FS_HZ))
    image = pixels(png)
    top, bottom = paper_rows()
    # the square wave's edges (at 1, 2, ... 9 s): the columns the trace crosses 1 mV in, right
    # of the calibration pulse, 1 s = 25 mm apart
    dark = image[top + 1 : bottom, trace_x(0.0) :].max(axis=2) < 90
    edges = line_centres(dark.sum(axis=0) > 0.5 * 10 * PX_PER_MM)
    assert len(edges) == 9
    assert np.diff(edges) == pytest.approx(25 * PX_PER_MM, abs=1.5)
    # the 5-mm squares: as wide as tall, 25 px (0.2 s and 0.5 mV at 10 mm/mV)
    columns = major_lines(image[top + 5, trace_x(0.0) : trace_x(10.0)])
    # (in the paper left of the calibration pulse: no trace crosses it there)
    lines = major_lines(image[top : bottom + 1, x_px(strips.LEFT_MM - strips.CAL_MM + 0.4)])
    assert np.diff(columns) == pytest.approx(5 * PX_PER_MM, abs=1)
    assert np.diff(lines) == pytest.approx(5 * PX_PER_MM, abs=1)
    assert len(lines) == strips.ROW_PAPER_MM / 5 + 1
    # the PNG says its resolution: printed at it, a millimetre of paper is one
    dpi = Image.open(io.BytesIO(png)).info["dpi"]
    assert dpi == pytest.approx((25.4 * PX_PER_MM, 25.4 * PX_PER_MM), abs=0.1)


def test_a_minute_is_six_rows_of_ten_seconds_at_the_same_scale(recording):
    store(recording, square_wave(1.0, 60.0))
    png = render_range_png(recording, 0, round(60 * FS_HZ))
    image = pixels(png)
    height_mm = strips.TITLE_MM + 6 * ROW_MM + strips.FOOTER_MM
    assert image.shape[0] == pytest.approx(height_mm * PX_PER_MM, abs=1)
    for row in range(6):
        assert step_px(image, row) == pytest.approx(10 * PX_PER_MM, abs=2)
        assert pulse_px(image, row) == pytest.approx(10 * PX_PER_MM, abs=2)
        # the high plateau 9-10 s into each row (pixel rows grow downwards): rows of 10 s
        assert level(image, trace_x(8.5), row) > level(image, trace_x(9.5), row)  # pixel rows


def test_the_range_png_draws_at_the_gain_asked_for(client, clinician, recording):
    store(recording, square_wave(1.0, 10.0))
    client.force_login(clinician)
    url = f"/api/recordings/{recording.pk}/range.png"
    response = client.get(url, {"length_s": "10", "gain_mm_per_mv": "20"})
    assert response.status_code == 200
    assert step_px(pixels(response.content)) == pytest.approx(20 * PX_PER_MM, abs=2)
    refused = client.get(url, {"gain_mm_per_mv": "7"})
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("gain_mm_per_mv must be one of 20, 10, 5, 2.5")


@pytest.fixture
def leads_off_and_gap(recording, rng):
    """Ten 1-s chunks of noise around 0 mV; chunks 3 and 4 sent with the leads off (and flat,
    as an electrode off often is), chunk 6 never arrived."""
    for seq in range(10):
        if seq == 6:
            continue
        lead_off = seq in (3, 4)
        noise = rng.uniform(-0.4, 0.4, size=250)
        store(recording, noise * (not lead_off), seq, seq * 250, lead_off=lead_off)
    recording.analysis_status = AnalysisStatus.DONE  # strip.png draws analysed recordings
    recording.save()
    return recording


def share(image: np.ndarray, from_s: float, to_s: float, test) -> float:
    """The share of the paper between two times (into the row) whose pixels pass ``test``."""
    top, bottom = paper_rows()
    box = image[top + 2 : bottom - 2, trace_x(from_s) + 2 : trace_x(to_s) - 2]
    return float(test(box).mean())


def bluish(box):
    return (box[..., 2] > box[..., 0] + 10) & (box[..., 2] > box[..., 1])


def gap_grey(box):
    return (np.abs(box - np.array([0xE5, 0xE7, 0xEB])) <= 2).all(axis=-1)


@pytest.mark.parametrize("picture", ["range.png", "strip.png"])
def test_leads_off_and_gaps_are_marked_in_the_png(client, clinician, leads_off_and_gap, picture):
    """The review page's blue-grey "Leads off" band and grey "no data" band, in the PNGs (the
    alarm e-mail's strip is range.png's): the flat leads-off second was a plain flat line."""
    client.force_login(clinician)
    response = client.get(f"/api/recordings/{leads_off_and_gap.pk}/{picture}?length_s=10")
    assert response.status_code == 200, response.content[:300]
    image = pixels(response.content)
    assert share(image, 3.0, 5.0, bluish) > 0.5  # the leads-off band
    for ecg in ((0.0, 3.0), (5.0, 6.0), (7.0, 10.0)):
        assert share(image, *ecg, bluish) < 0.01
    assert share(image, 6.0, 7.0, gap_grey) > 0.5  # the gap's band
    assert share(image, 3.0, 5.0, gap_grey) < 0.01


def test_the_results_page_states_the_span_and_the_gaps(client, clinician, recording):
    """A device recording 80 s long with 22 s missing: "Duration 58.0 s" alone hid the gap."""
    recording.source = Recording.Source.DEVICE
    recording.analysis_status = AnalysisStatus.DONE
    recording.save()
    store(recording, np.zeros(round(40 * FS_HZ)), 0, 0)
    store(recording, np.zeros(round(18 * FS_HZ)), 1, round(62 * FS_HZ))
    client.force_login(clinician)
    page = client.get(f"/recordings/{recording.pk}/").content.decode()
    assert "80.0 s from the start to the last sample" in page
    assert '<strong id="signal-gaps">1 gap, 22.0 s missing</strong>' in page
