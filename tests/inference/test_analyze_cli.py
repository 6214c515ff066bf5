"""``python -m inference.analyze``: the lead it reads, the reference it scores against, and the
one-line errors it gives instead of tracebacks. Synthetic records, so no PhysioNet data needed."""

import json
from pathlib import Path

import numpy as np
import pytest
import wfdb

from inference import analyze
from inference.synthetic import generate

STRIP = generate(30.0, fs=250.0, seed=5)


def record(folder: Path, leads: dict[str, np.ndarray], atr: tuple | None = None) -> Path:
    """Record ``rec`` at 250 Hz with ``leads`` (name: mV) and ``atr`` = (samples, symbols,
    aux notes) annotations; its path without extension."""
    wfdb.wrsamp(
        "rec",
        fs=250,
        units=["mV"] * len(leads),
        sig_name=list(leads),
        p_signal=np.column_stack(list(leads.values())),
        fmt=["16"] * len(leads),
        write_dir=str(folder),
    )
    if atr is not None:
        samples, symbols, notes = atr
        wfdb.wrann(
            "rec",
            "atr",
            np.asarray(samples),
            np.array(symbols),
            aux_note=notes,
            write_dir=str(folder),
        )
    return folder / "rec"


def test_an_atr_with_only_rhythm_marks_gives_no_agreement_and_says_why(tmp_path, capsys):
    path = record(tmp_path, {"MLII": STRIP.signal_mv}, ([10, 3000], ["+", "+"], ["(N", "(VT"]))
    output = tmp_path / "out.json"
    assert analyze.main([str(path), "--json", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "rec.atr holds no beat annotations (only rhythm or other marks)" in printed
    assert "nan" not in printed
    result = json.loads(output.read_text())
    assert "reference" not in result and "rec.atr holds no beat" in result["reference_note"]


def test_a_twelve_lead_record_is_read_on_lead_ii_as_the_upload_reads_it(tmp_path):
    from inference.datasets.wfdb_record import analysis_lead
    from monitoring import uploads

    flat = np.zeros_like(STRIP.signal_mv)
    path = record(tmp_path, {"I": flat, "II": STRIP.signal_mv, "III": flat})
    output = tmp_path / "out.json"
    assert analyze.main([str(path), "--json", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["lead"] == "II"
    assert abs(result["summary"]["n_beats"] - len(STRIP.beats)) <= 2
    assert uploads.analysis_lead is analysis_lead  # one rule for both
    assert [analysis_lead(names) for names in (["V1", "MLII"], ["I", "II"], ["V5"])] == [1, 1, 0]


def test_a_header_with_an_unreadable_sampling_rate_is_refused(tmp_path):
    path = record(tmp_path, {"MLII": STRIP.signal_mv})
    header = path.with_suffix(".hea")
    lines = header.read_text().splitlines()
    header.write_text("\n".join(["rec 1 abc 7500", *lines[1:]]) + "\n")
    with pytest.raises(SystemExit, match=r"rec\.hea: the sampling rate .*'abc'"):
        analyze.main([str(path)])
    header.write_bytes(np.random.default_rng(1).bytes(200))
    with pytest.raises(SystemExit, match=r"rec\.hea is not a valid WFDB header"):
        analyze.main([str(path)])


def test_a_lead_named_in_utf8_keeps_its_name(tmp_path):
    # wfdb reads a header as ASCII and drops the other bytes: the lead was 'Ableitung', and
    # --lead 'Ableitung Ⅱ' was "no lead"
    from inference.datasets.wfdb_record import read_record_mv

    path = record(tmp_path, {"V1": np.zeros_like(STRIP.signal_mv), "AB": STRIP.signal_mv})
    header = path.with_suffix(".hea")
    header.write_bytes(header.read_bytes().replace(b" AB\n", " Ableitung Ⅱ\n".encode()))
    output = tmp_path / "out.json"
    assert analyze.main([str(path), "--lead", "Ableitung Ⅱ", "--json", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["lead"] == "Ableitung Ⅱ"
    assert abs(result["summary"]["n_beats"] - len(STRIP.beats)) <= 2
    assert read_record_mv(path, channels=[1]).sig_name == ["Ableitung Ⅱ"]
    header.write_bytes(header.read_bytes().replace(b"/mV", "/µV".encode(), 1))
    with pytest.raises(SystemExit, match=r"its units \('µV'\); .* write microvolts as uV"):
        analyze.main([str(path), "--lead", "Ableitung Ⅱ"])


def test_the_record_may_be_named_by_its_dat_file_but_fs_is_refused(tmp_path, capsys):
    path = record(tmp_path, {"MLII": STRIP.signal_mv})
    assert analyze.main([str(path.with_suffix(".dat"))]) == 0
    assert "rec (MLII, 250 Hz" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--fs is for a CSV file"):
        analyze.main([str(path), "--fs", "360"])


def test_files_it_cannot_read_or_write_are_one_line_errors(tmp_path):
    with pytest.raises(SystemExit, match="no CSV file"):
        analyze.main([str(tmp_path / "nope.csv"), "--fs", "250"])
    with pytest.raises(SystemExit, match="no WFDB header"):
        analyze.main([str(tmp_path / "nope")])
    two_columns = tmp_path / "two.csv"
    two_columns.write_text("t,mv\n0.1,0.2\n0.2,0.3\n")
    with pytest.raises(SystemExit, match="line 2 has 2 values: a signal CSV has one column"):
        analyze.main([str(two_columns), "--fs", "250"])
    path = record(tmp_path, {"MLII": STRIP.signal_mv})
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit, match="cannot write"):
        analyze.main([str(path), "--json", str(tmp_path / "a-file" / "out.json")])


def test_the_ptbxl_summary_names_a_missing_folder(tmp_path):
    from inference.datasets import ptbxl

    with pytest.raises(SystemExit, match="not found"):
        ptbxl.main(["--data", str(tmp_path / "nonexistent")])


def test_a_corrupt_atr_is_a_one_line_error(tmp_path):
    path = record(tmp_path, {"MLII": STRIP.signal_mv})
    # random bytes wfdb cannot read (other seeds' bytes can happen to parse as annotations)
    (tmp_path / "rec.atr").write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(SystemExit, match=r"rec\.atr is not a readable WFDB annotation file"):
        analyze.main([str(path)])


def test_an_upper_case_csv_has_no_reference_note(tmp_path):
    csv = tmp_path / "SIG.CSV"
    np.savetxt(csv, STRIP.signal_mv)
    output = tmp_path / "out.json"
    assert analyze.main([str(csv), "--fs", "250", "--json", str(output)]) == 0
    assert "reference_note" not in json.loads(output.read_text())


def _damaged(folder: Path, problem: str) -> Path:
    """Record ``rec`` whose header passes its first-line check but not its files."""
    path = record(folder, {"MLII": STRIP.signal_mv})
    header = path.with_suffix(".hea")
    text = header.read_text()
    if problem == "no signal lines":
        header.write_text("rec 1 250\n")
    elif problem == "missing .dat":
        header.write_text(text.replace("rec.dat", "gone.dat"))
    elif problem == "format 999":
        header.write_text(text.replace("rec.dat 16 ", "rec.dat 999 "))
    elif problem == "more samples than the file":
        header.write_text(text.replace("rec 1 250 7500", "rec 1 250 9000"))
    elif problem == "truncated .dat":
        dat = path.with_suffix(".dat")
        dat.write_bytes(dat.read_bytes()[:7000])
    return path


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("no signal lines", r"rec\.hea declares 1 signals on its first line but describes 0"),
        ("missing .dat", r"rec\.hea stores signal\(s\) 1 in gone\.dat, which is not in"),
        ("format 999", r"rec\.dat uses format 999, which wfdb cannot read"),
        (
            "more samples than the file",
            r"rec\.dat holds 15000 bytes, but rec\.hea says it holds 9000",
        ),
        ("truncated .dat", r"rec\.dat holds 7000 bytes, but rec\.hea says it holds 7500"),
    ],
)
def test_a_header_that_disagrees_with_its_files_is_a_one_line_error(tmp_path, problem, message):
    path = _damaged(tmp_path, problem)
    with pytest.raises(SystemExit, match=message):
        analyze.main([str(path)])


@pytest.mark.parametrize(("units", "scale"), [("V", 1e-3), ("uV", 1e3)])
def test_a_record_in_volts_is_analysed_in_millivolts(tmp_path, units, scale):
    # read as mV, a record in V had 0 beats and a false PAUSE
    path = tmp_path / "rec"
    wfdb.wrsamp(
        "rec",
        fs=250,
        units=[units],
        sig_name=["MLII"],
        p_signal=STRIP.signal_mv[:, np.newaxis] * scale,
        fmt=["16"],
        write_dir=str(tmp_path),
    )
    output = tmp_path / "out.json"
    assert analyze.main([str(path), "--json", str(output)]) == 0
    result = json.loads(output.read_text())
    assert abs(result["summary"]["n_beats"] - len(STRIP.beats)) <= 2
    assert not [e for e in result["episodes"] if e["kind"] == "PAUSE"]


def test_a_record_with_a_gap_is_refused_naming_where(tmp_path):
    signal = STRIP.signal_mv.copy()
    signal[2500:5000] = np.nan  # written as -32768, as the project's export writes gaps
    path = record(tmp_path, {"MLII": signal})
    with pytest.raises(
        SystemExit, match=r"2500 missing samples \(10\.0 s; the first at sample 2500"
    ):
        analyze.main([str(path)])


def test_a_csv_with_blank_cells_among_its_samples_is_refused_naming_the_line(tmp_path):
    # blank lines were skipped: 10 s of 60 analysed as 50 s, every later beat 10 s early
    csv = tmp_path / "gap.csv"
    values = [f"{v:.4f}" for v in STRIP.signal_mv]
    csv.write_text("mv\n" + "\n".join(values[:1000] + [""] * 3 + values[1000:]) + "\n\n\n")
    with pytest.raises(SystemExit, match=r"gap\.csv line 1002 is blank: a missing sample"):
        analyze.main([str(csv), "--fs", "250"])
    nan = tmp_path / "nan.csv"
    nan.write_text("\n".join(values[:1000] + ["nan"] + values[1000:]) + "\n")
    with pytest.raises(SystemExit, match=r"nan\.csv line 1001: 'nan' is not a sample"):
        analyze.main([str(nan), "--fs", "250"])
    trailing = tmp_path / "ok.csv"
    trailing.write_text("\n".join(values) + "\n\n\n")  # blank lines after the last sample
    assert analyze.main([str(trailing), "--fs", "250"]) == 0
