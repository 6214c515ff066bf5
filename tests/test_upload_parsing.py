"""Parsing uploads without storing them: layouts, labels, leads, and the int16 gain."""

import numpy as np
import pytest

from monitoring.uploads import UploadError, parse_upload, quantize
from tests.upload_helpers import mitdb_folder, wfdb_excerpt


def kaggle_line(values, label: str) -> str:
    return ",".join(f"{v:.18e}" for v in values) + f",{label}"


def test_it_reads_kaggle_files_with_float_labels_and_crlf_line_ends():
    rng = np.random.default_rng(0)
    rows = rng.random((4, 187))
    labels = ["0.000000000000000000e+00", "2.000000000000000000e+00", "4.0", "1"]
    text = "\r\n".join(kaggle_line(row, label) for row, label in zip(rows, labels, strict=True))
    parsed = parse_upload([("mitbih_test.csv", text.encode())])
    assert parsed.format == "kaggle187" and parsed.fs_hz == 125.0
    assert parsed.reference == {"labels": ["N", "V", "Q", "S"]}
    stored = parsed.adc[:, 0] / parsed.gain_adc_per_mv
    np.testing.assert_allclose(stored, rows.ravel(), atol=0.5 / parsed.gain_adc_per_mv + 1e-12)


def test_it_reads_a_signal_with_a_header_and_blank_lines():
    values = np.sin(np.linspace(0, 20, 1000))
    text = "ecg (mV)\n\n" + "\n".join(f"{v:.5f}" for v in values) + "\n\n"
    parsed = parse_upload([("ecg.txt", text.encode())], fs_hz="500")
    assert (parsed.format, parsed.fs_hz, parsed.n_samples) == ("csv-signal", 500.0, 1000)


def test_it_names_the_line_after_blank_lines_in_the_careful_path():
    text = "ecg\n" + "0.1\n" * 10 + "\n\n" + "0.2\n" * 600 + "x1\n"
    with pytest.raises(UploadError, match=r"^ecg.csv line 614: 'x1' is not a number$"):
        parse_upload([("ecg.csv", text.encode())], fs_hz=250)


def test_it_tells_a_labelled_216_row_from_a_217_value_mistake():
    rng = np.random.default_rng(1)
    good = "\n".join(",".join(f"{v:.4f}" for v in rng.normal(size=216)) + ",V" for _ in range(3))
    assert parse_upload([("b.csv", good.encode())]).reference == {"labels": ["V"] * 3}
    # 217 numbers: the last one is read as a label, and 0.37 is not one
    bad = ",".join(f"{v:.2f}" for v in [0.5] * 216) + ",0.37"
    with pytest.raises(UploadError, match=r"label '0.37' is not one of 0-4"):
        parse_upload([("b.csv", bad.encode())])


def test_it_chooses_a_gain_that_keeps_int16_resolution():
    signal = np.array([[-2.5], [0.0], [1.234567], [3.2]])
    adc, gain = quantize(signal)
    assert adc.dtype == np.int16
    assert 9_000 <= gain <= 10_000  # 3.2 mV at about 32,000 ADC units
    assert np.max(np.abs(adc / gain - signal)) <= 0.5 / gain
    zeros, zero_gain = quantize(np.zeros((5, 1)))
    assert not zeros.any() and zero_gain > 0


def test_it_analyses_mlii_when_it_is_not_the_first_channel(tmp_path):
    mitdb_folder()
    files = wfdb_excerpt(tmp_path, "114", seconds=10.0, with_atr=False)  # V5 first, MLII second
    parsed = parse_upload(list(files.items()))
    assert parsed.lead_names == ["V5", "MLII"]
    assert parsed.analysis_lead == 1
    assert parsed.adc.shape == (3600, 2)


def test_it_requantizes_channels_with_different_gains(tmp_path):
    import wfdb

    signals = np.stack(
        [np.sin(np.linspace(0, 30, 2500)), 0.2 * np.cos(np.linspace(0, 30, 2500))], 1
    )
    wfdb.wrsamp(
        "mixed",
        fs=250,
        units=["mV", "uV"],
        sig_name=["I", "II"],
        p_signal=signals * np.array([1.0, 1000.0]),
        fmt=["16", "16"],
        adc_gain=[200.0, 0.5],
        baseline=[0, 0],
        write_dir=str(tmp_path),
    )
    files = [(name, (tmp_path / name).read_bytes()) for name in ("mixed.hea", "mixed.dat")]
    parsed = parse_upload(files)
    assert parsed.baseline_adc == 0 and parsed.analysis_lead == 1  # lead II
    millivolts = parsed.adc / parsed.gain_adc_per_mv
    np.testing.assert_allclose(millivolts, signals, atol=0.01)  # uV channel converted to mV


def test_it_analyses_lead_ii_of_a_twelve_lead_record():
    folder = mitdb_folder().parent / "ptbxl" / "records100" / "00000"
    if not (folder / "00001_lr.hea").exists():
        pytest.skip(f"needs PTB-XL in {folder}")
    files = [(name, (folder / name).read_bytes()) for name in ("00001_lr.hea", "00001_lr.dat")]
    parsed = parse_upload(files)
    assert len(parsed.lead_names) == 12 and parsed.lead_names[parsed.analysis_lead] == "II"
    assert (parsed.fs_hz, parsed.gain_adc_per_mv, parsed.n_samples) == (100.0, 1000.0, 1000)
