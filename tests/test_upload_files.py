"""Files that parsed wrongly or not at all: large CSVs with a bad cell at the end, the headers
pandas writes, BOM-only files, upper-case WFDB extensions, damaged .dat files (checksums),
formats 310/311 at every sample count, and line numbers in range errors."""

import errno
import os

import numpy as np
import pytest

from inference.synthetic import generate
from monitoring.models import Recording, SampleChunk
from monitoring.samples import MAX_GAIN_ADC_PER_MV, MIN_GAIN_ADC_PER_MV
from monitoring.uploads import UploadError, parse_upload
from tests.upload_helpers import api_upload, synthetic_wfdb


def refused_message(files: dict[str, bytes], **fields) -> str:
    with pytest.raises(UploadError) as caught:
        parse_upload(list(files.items()), **fields)
    return str(caught.value)


def ecg_mv(n_samples: int, fs_hz: float = 250.0) -> np.ndarray:
    return generate(n_samples / fs_hz, fs=fs_hz, seed=5).signal_mv[:n_samples]


def wfdb_checksum(samples: np.ndarray) -> int:
    """The sum of the samples as a signed 16-bit number, as WFDB headers write it."""
    return (int(np.sum(samples, dtype=np.int64)) + 32768) % 65536 - 32768


def beat_lines(n_rows: int, n_values: int, scale: float = 1.0) -> list[str]:
    rng = np.random.default_rng(2)
    return [",".join(f"{v:.4f}" for v in scale * rng.random(n_values)) for _ in range(n_rows)]


# --- 1. a bad cell at the end of a large CSV --------------------------------------------


def test_it_names_a_bad_cell_on_the_last_line_of_a_large_signal():
    # over 1 MiB of lines, so the careful read takes several batches; CRLF and blank lines
    lines = ["ecg_mv", ""] + [f"{v:.5f}" for v in ecg_mv(200_000)] + ["", "oops"]
    text = "\r\n".join(lines) + "\r\n"
    assert len(text) > 2**20
    message = refused_message({"ecg.csv": text.encode()}, fs_hz=250)
    assert message == f"ecg.csv line {len(lines)}: 'oops' is not a number"
    lines[-1] = "nan"
    message = refused_message({"ecg.csv": "\n".join(lines).encode()}, fs_hz=250)
    assert message.startswith(f"ecg.csv line {len(lines)}: 'nan' is not a finite number")


def test_it_names_a_bad_cell_on_the_last_row_of_a_large_beat_file():
    lines = beat_lines(3000, 216)  # ~4 MB
    cells = lines[-1].split(",")
    cells[200] = "1.2.3"
    lines[-1] = ",".join(cells)
    message = refused_message({"beats.csv": ("\n".join(lines) + "\n").encode()})
    assert message == "beats.csv line 3000 (row 3000, value 201): '1.2.3' is not a number"


def test_it_reports_the_first_problem_in_file_order():
    # a bad number on line 3 comes before a short row on line 5
    lines = beat_lines(6, 187)
    lines[2] = "x," + lines[2].split(",", 1)[1]
    lines[4] = lines[4].rsplit(",", 1)[0]
    message = refused_message({"beats.csv": "\n".join(lines).encode()})
    assert message == "beats.csv line 3 (row 3, value 1): 'x' is not a number"


def test_it_refuses_a_row_wider_than_the_first_under_a_wide_header():
    # a header wider than the data must not let pandas drop the extra cells of a later row
    text = "time,ecg_mv\n" + "0.1\n" * 600 + "0.2,0.3\n" + "0.1\n" * 10
    message = refused_message({"ecg.csv": text.encode()}, fs_hz=250)
    assert message.startswith("ecg.csv line 602 has 2 columns")


# --- 2. the header pandas writes by default ---------------------------------------------


def test_it_reads_the_header_pandas_writes_for_an_unnamed_series():
    import pandas as pd

    ecg = ecg_mv(1000)
    text = pd.Series(ecg).to_csv(index=False)
    assert text.startswith("0\n")
    parsed = parse_upload([("ecg.csv", text.encode())], fs_hz=250)
    assert parsed.n_samples == 1000  # not 1001: the header is not a 0.0 mV sample
    stored = parsed.adc[:, 0] / parsed.gain_adc_per_mv
    np.testing.assert_allclose(stored, ecg, atol=0.5 / parsed.gain_adc_per_mv + 1e-9)


def test_it_keeps_a_first_sample_of_0_in_a_file_of_whole_numbers():
    # written without decimal points, so a leading "0" is a sample, not pandas' header
    values = [0, 1, -1, 2] * 200
    text = "\n".join(str(v) for v in values)
    parsed = parse_upload([("ecg.csv", text.encode())], fs_hz=250)
    assert parsed.n_samples == 800
    assert parsed.adc[0, 0] == 0 and parsed.adc[1, 0] == round(parsed.gain_adc_per_mv)


@pytest.mark.parametrize(
    ("layout", "width", "scale"), [("kaggle187", 187, 1.0), ("window216", 216, 3.0)]
)
def test_it_reads_the_header_pandas_writes_for_unnamed_beat_columns(layout, width, scale):
    import pandas as pd

    rows = scale * np.random.default_rng(4).random((5, width))
    unlabelled = pd.DataFrame(rows).to_csv(index=False)
    assert unlabelled.startswith("0,1,2,")
    parsed = parse_upload([("beats.csv", unlabelled.encode())])
    assert (parsed.format, parsed.n_samples) == (layout, 5 * width)  # no fake first beat
    np.testing.assert_allclose(
        parsed.adc[:width, 0] / parsed.gain_adc_per_mv, rows[0], atol=1 / parsed.gain_adc_per_mv
    )
    frame = pd.DataFrame(rows)
    frame[width] = [0, 2, 1, 4, 3]  # the label column: header 0..width
    parsed = parse_upload([("beats.csv", frame.to_csv(index=False).encode())])
    assert parsed.reference == {"labels": ["N", "V", "S", "Q", "F"]}


@pytest.mark.parametrize(
    ("width", "bad", "expected"),
    [
        (216, "1e10", "is 1e+10: window216 rows (216 values) are in millivolts"),
        (216, "-100.5", "is -100.5: window216 rows (216 values) are in millivolts"),
        (187, "1e300", "is 1e+300: kaggle187 rows (187 values) are normalized to 0..1"),
        (187, "1.5", "is 1.5: kaggle187 rows (187 values) are normalized to 0..1"),
        (187, "-0.1", "is -0.1: kaggle187 rows (187 values) are normalized to 0..1"),
    ],
)
def test_it_refuses_beat_values_outside_their_layouts_range(width, bad, expected):
    lines = beat_lines(4, width)
    cells = lines[2].split(",")
    cells[4] = bad
    lines[2] = ",".join(cells)
    text = "header\n\n" + "\n".join(lines)  # row 3 is on line 5
    message = refused_message({"beats.csv": text.encode()})
    assert message.startswith(f"beats.csv line 5 (row 3, value 5) {expected}")


def test_it_keeps_the_gain_of_beat_rows_within_the_models_limits():
    for width, scale in ((216, 19.9), (216, 1e-9), (187, 1.0), (187, 0.0)):
        parsed = parse_upload([("beats.csv", "\n".join(beat_lines(3, width, scale)).encode())])
        assert MIN_GAIN_ADC_PER_MV <= parsed.gain_adc_per_mv <= MAX_GAIN_ADC_PER_MV


# --- 3. a CSV of only a byte-order mark or Unicode spaces -------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("content", [b"\xef\xbb\xbf", "\u00a0\n".encode(), b"\xef\xbb\xbf\r\n\t\n"])
def test_it_refuses_a_csv_of_only_a_bom_or_unicode_space(client, clinician, patient, content):
    client.force_login(clinician)
    response = api_upload(client, patient.pk, {"ecg.csv": content}, fs_hz=250)
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == "ecg.csv is empty"
    assert not Recording.objects.exists() and not SampleChunk.objects.exists()


# --- 4. upper-case extensions; no server paths in errors --------------------------------


def test_it_reads_a_record_with_upper_case_extensions(tmp_path):
    import wfdb

    files = synthetic_wfdb(tmp_path)
    wfdb.wrann(
        "syn",
        "atr",
        np.array([100, 350, 600]),
        np.array(["N", "V", "N"]),
        fs=250,
        write_dir=str(tmp_path),
    )
    upload = {
        "syn.HEA": files["syn.hea"],
        "syn.DAT": files["syn.dat"],
        "syn.ATR": (tmp_path / "syn.atr").read_bytes(),
    }
    parsed = parse_upload(list(upload.items()))
    assert (parsed.n_samples, parsed.lead_names) == (2500, ["II", "V1"])
    assert parsed.reference == {"samples": [100, 350, 600], "labels": ["N", "V", "N"]}


def test_it_keeps_the_server_folder_out_of_wfdb_errors(tmp_path, monkeypatch):
    import wfdb

    def unreadable(record_path, **kwargs):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), record_path + ".dat")

    monkeypatch.setattr(wfdb, "rdrecord", unreadable)
    message = refused_message(synthetic_wfdb(tmp_path))
    assert message == "could not read record syn: [Errno 2] No such file or directory: 'syn.dat'"


# --- 5. checksums and initial values ----------------------------------------------------


def test_it_refuses_a_dat_file_whose_checksum_disagrees_with_its_header(tmp_path):
    files = synthetic_wfdb(tmp_path)
    assert " 0 3 39082 0 II" in files["syn.hea"].decode()  # init value 3, checksum 39082
    damaged = bytearray(files["syn.dat"])
    damaged[1000:1100] = bytes(100)  # the right size, wrong samples
    actual = wfdb_checksum(np.frombuffer(bytes(damaged), "<i2").reshape(-1, 2)[:, 0])
    message = refused_message({"syn.hea": files["syn.hea"], "syn.dat": bytes(damaged)})
    assert message == (
        f"syn.dat does not hold the samples syn.hea describes: signal 1 (II) has checksum "
        f"{actual}, but the header says 39082; the file is damaged or belongs to another record"
    )


def test_it_refuses_a_dat_file_whose_first_sample_disagrees_with_its_header(tmp_path):
    files = synthetic_wfdb(tmp_path)
    header = files["syn.hea"].replace(b" 0 3 39082 0 II", b" 0 4 39082 0 II")
    message = refused_message({"syn.hea": header, "syn.dat": files["syn.dat"]})
    assert message.startswith(
        "syn.dat does not hold the samples syn.hea describes: signal 1 (II) starts at 3, but "
        "the header says its initial value is 4"
    )


def test_it_checks_every_sample_of_a_multi_frequency_record():
    # signal 1 has two samples per frame: its checksum covers both, not their average
    rng = np.random.default_rng(0)
    twice, once = rng.integers(-300, 300, (1000, 2)), rng.integers(-300, 300, 1000)
    data = np.column_stack([twice, once]).astype("<i2").tobytes()
    header = (
        f"mf 2 250 1000\nmf.dat 16x2 200 16 0 {twice[0, 0]} {wfdb_checksum(twice)} 0 II\n"
        f"mf.dat 16 200 16 0 {once[0]} {wfdb_checksum(once)} 0 V1\n"
    ).encode()
    assert parse_upload([("mf.hea", header), ("mf.dat", data)]).adc.shape == (1000, 2)
    damaged = data[:600] + bytes(6) + data[606:]
    message = refused_message({"mf.hea": header, "mf.dat": damaged})
    assert "signal 1 (II) has checksum" in message


# --- 6. formats 310 and 311 at every count of samples -----------------------------------


def pack_310_311(samples: np.ndarray, fmt: str) -> bytes:
    """Samples (10-bit) in WFDB format 310 or 311, as the WFDB spec lays them out: three
    samples in a 4-byte group; a last one takes 2 bytes, a last two 4 (310) or 3 (311)."""
    n = len(samples)
    values = np.zeros(-(-n // 3) * 3, dtype=np.int64)
    values[:n] = samples
    s0, s1, s2 = (values[i::3] & 0x3FF for i in range(3))
    if fmt == "311":  # one little-endian 32-bit word: s0 | s1 << 10 | s2 << 20
        groups = (s0 | s1 << 10 | s2 << 20).astype("<u4")
    else:  # two 16-bit words: s0 and s1 in bits 1-10, s2 split over bits 11-15 of both
        words = np.stack([s0 << 1 | (s2 & 0x1F) << 11, s1 << 1 | (s2 >> 5) << 11], axis=1)
        groups = words.astype("<u2")
    left_over_bytes = {"310": [0, 2, 4], "311": [0, 2, 3]}[fmt][n % 3]
    return groups.tobytes()[: n // 3 * 4 + left_over_bytes]


@pytest.mark.parametrize("fmt", ["310", "311"])
@pytest.mark.parametrize("n_samples", [5001, 5002, 5003])
def test_it_reads_formats_310_and_311_whatever_the_count_leaves_over(fmt, n_samples):
    samples = np.round(ecg_mv(n_samples) * 200).astype(np.int64).clip(-500, 500)
    data = pack_310_311(samples, fmt)
    # 5002 samples: 1667 groups of 4 bytes and one sample in 2 bytes (not a whole group)
    assert len(data) == {5001: 6668, 5002: 6670, 5003: 6672 if fmt == "310" else 6671}[n_samples]
    header = (
        f"r 1 250 {n_samples}\nr.dat {fmt} 200 10 0 {samples[0]} {wfdb_checksum(samples)} 0 II\n"
    ).encode()
    parsed = parse_upload([("r.hea", header), ("r.dat", data)])
    assert parsed.n_samples == n_samples
    np.testing.assert_array_equal(parsed.adc[:, 0], samples)
    for wrong in (data[:-1], data + b"\x00\x00"):
        assert "the header and the data disagree" in refused_message(
            {"r.hea": header, "r.dat": wrong}
        )


def test_it_takes_format_311_padded_to_whole_groups_as_the_wfdb_library_writes_it():
    samples = np.round(ecg_mv(5003) * 200).astype(np.int64).clip(-500, 500)
    data = pack_310_311(samples, "311") + b"\x00"  # 5003 = 3 * 1667 + 2: 3 bytes, padded to 4
    header = b"r 1 250 5003\nr.dat 311 200 10 0\n"
    assert parse_upload([("r.hea", header), ("r.dat", data)]).n_samples == 5003


# --- 7. line numbers in range errors ----------------------------------------------------


def test_it_names_the_files_line_of_a_sample_out_of_range():
    values = [f"{v:.4f}" for v in ecg_mv(1000)]
    values[9] = "1100"
    text = "ecg_mv\n\n\n" + "\n".join(values)  # sample 10 is on line 13
    message = refused_message({"ecg.csv": text.encode()}, fs_hz=250)
    assert message.startswith("ecg.csv line 13 (sample 10) is 1100: a signal CSV is in millivolts")


@pytest.mark.django_db
def test_it_refuses_a_signal_name_with_a_control_character(client, clinician, patient, tmp_path):
    # stored as the lead's name in JSON: PostgreSQL refuses a NUL there, which was a 500
    files = synthetic_wfdb(tmp_path)
    files["syn.hea"] = files["syn.hea"].replace(b" V1", b" V\x001")
    client.force_login(clinician)
    response = api_upload(client, patient.pk, files)
    assert response.status_code == 400, response.content
    assert "the name of signal 2 ('V\\x001') holds a control character" in response.json()["detail"]
    assert not Recording.objects.exists()


# --- 8. the command line's checks (inference.datasets.wfdb_record), word for word -------

# (header, .dat) of the synthetic record "syn" (2 signals, 2500 samples, format 16) -> damaged
DAMAGES = {
    "signal count": lambda hea, dat: (hea.replace(b"syn 2 250", b"syn 3 250", 1), dat),
    "no sample count": lambda hea, dat: (hea.replace(b"syn 2 250 2500", b"syn 2 250", 1), dat),
    "format": lambda hea, dat: (hea.replace(b"syn.dat 16 ", b"syn.dat 999 "), dat),
    "mixed formats": lambda hea, dat: (hea.replace(b"syn.dat 16 ", b"syn.dat 212 ", 1), dat),
    "not a voltage": lambda hea, dat: (hea.replace(b"/mV", b"/mmHg", 1), dat),
    "a path": lambda hea, dat: (hea.replace(b"syn.dat", b"~"), dat),
    "cut .dat": lambda hea, dat: (hea, dat[:-100]),
    "padded .dat": lambda hea, dat: (hea, dat + bytes(40)),
    "more samples": lambda hea, dat: (hea.replace(b"syn 2 250 2500", b"syn 2 250 3000", 1), dat),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_the_upload_and_the_command_line_refuse_a_bad_record_in_the_same_words(tmp_path, damage):
    # one set of checks (inference.datasets.wfdb_record) for both: they used to be two copies
    # whose messages had drifted apart (the sample count, the formats)
    from inference.datasets.wfdb_record import check_record

    files = synthetic_wfdb(tmp_path)
    header, data = DAMAGES[damage](files["syn.hea"], files["syn.dat"])
    (tmp_path / "syn.hea").write_bytes(header)
    (tmp_path / "syn.dat").write_bytes(data)
    with pytest.raises(ValueError) as command_line:
        check_record(tmp_path / "syn")
    refused = refused_message({"syn.hea": header, "syn.dat": data})
    # the formats each lists differ: the upload takes no FLAC (below)
    assert (
        refused.split("; supported formats")[0]
        == str(command_line.value).split("; supported formats")[0]
    )


def test_the_upload_refuses_a_flac_record_that_the_command_line_reads(tmp_path):
    # FLAC's size says nothing of its samples, so the upload's size check cannot run: it
    # takes the uncompressed formats only, as before; the command line reads FLAC
    import wfdb

    from inference.datasets.wfdb_record import check_record

    wfdb.wrsamp(
        "fl",
        fs=250,
        units=["mV"],
        sig_name=["II"],
        p_signal=ecg_mv(2500)[:, np.newaxis],
        fmt=["516"],
        write_dir=str(tmp_path),
    )
    assert check_record(tmp_path / "fl").fmt == ["516"]
    files = {name: (tmp_path / name).read_bytes() for name in ("fl.hea", "fl.dat")}
    assert refused_message(files) == (
        "fl.hea: fl.dat uses format 516 (FLAC compressed), which is not taken here; supported "
        "formats are 8, 16, 24, 32, 61, 80, 160, 212, 310, 311"
    )


# --- 9. signal names in UTF-8 -----------------------------------------------------------


def test_it_keeps_signal_names_written_in_utf8(tmp_path):
    # wfdb reads a header as ASCII and drops the other bytes: these were stored as
    # 'Ableitung' and 'ch2' (no name left) without a word
    files = synthetic_wfdb(tmp_path)
    header = files["syn.hea"].replace(b" II\n", " Ableitung Ⅱ\n".encode())
    header = header.replace(b" V1\n", " 導程\n".encode())
    parsed = parse_upload([("syn.hea", header), ("syn.dat", files["syn.dat"])])
    assert parsed.lead_names == ["Ableitung Ⅱ", "導程"]
    # with the byte-order mark some editors write (wfdb drops it, as before)
    with_bom = parse_upload([("syn.hea", b"\xef\xbb\xbf" + header), ("syn.dat", files["syn.dat"])])
    assert with_bom.lead_names == ["Ableitung Ⅱ", "導程"]
    # the signal is read as before
    np.testing.assert_array_equal(parsed.adc, parse_upload(list(files.items())).adc)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            b" II\n",
            " Ableitung ä\n".encode("latin-1"),
            "syn.hea: the line of signal 1 holds the byte 0xe4, which is neither ASCII nor UTF-8 "
            "text; save the header as UTF-8 or ASCII",
        ),
        (
            # read as 'V' (the 'µ' dropped), microvolts would be scaled as volts
            b"/mV",
            "/µV".encode(),
            "syn.hea: the line of signal 1 holds non-ASCII characters in its units ('µV'); only "
            "a signal's name may be written in UTF-8; write microvolts as uV",
        ),
        (
            b"syn 2 250 2500",
            "syn 2 250 2500 ⏰".encode(),
            "syn.hea: its first line holds non-ASCII characters ('syn 2 250 2500 ⏰'); only a "
            "signal's name may be written in UTF-8",
        ),
    ],
)
def test_it_refuses_other_non_ascii_in_a_header_naming_it(tmp_path, old, new, message):
    files = synthetic_wfdb(tmp_path)
    header = files["syn.hea"].replace(old, new, 1)
    assert refused_message({"syn.hea": header, "syn.dat": files["syn.dat"]}) == message
