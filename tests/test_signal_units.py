"""Signal units at the inputs: /predict's and the diagnosis's wrong-unit refusal, a signal CSV
that names its unit in its header (ecg_mv, ecg_uv, ecg_v), and the ±100 mV sample limit that
signal CSVs and WFDB records share (docs/upload.md, "Signal amplitude").

Real-data checks read the PhysioNet data folder when it is there (nstdb: Moody GB, Muldrow WE,
Mark RG. A noise stress test for arrhythmia detectors. Computers in Cardiology 11:381-384,
1984; PTB-XL: Wagner P, Strodthoff N, et al. Scientific Data 7:154, 2020) and skip otherwise;
the excerpts are cut at test time, nothing is committed.
"""

import io

import numpy as np
import pytest
import wfdb

from inference.analyze import load_csv
from inference.datasets.ptbxl import LEADS
from inference.ptbxl_models import prepare_leads
from inference.signal import MAX_ECG_ABS_MV, ecg_record_amplitude_problem
from inference.synthetic import generate
from monitoring.models import Recording
from monitoring.recordings import samples_mv
from monitoring.uploads import UploadError, parse_upload
from tests.inference.conftest import physionet_folder
from tests.upload_helpers import api_upload

FS_HZ = 250.0
ECG_MV = generate(10.0, fs=FS_HZ, seed=11).signal_mv


def csv_bytes(header: str | None, values) -> bytes:
    lines = ([header] if header is not None else []) + [f"{v:.9g}" for v in values]
    return ("\n".join(lines) + "\n").encode()


def stored_mv(parsed) -> np.ndarray:
    return (parsed.adc[:, parsed.analysis_lead] - parsed.baseline_adc) / parsed.gain_adc_per_mv


def refused(files, fs_hz=None) -> str:
    with pytest.raises(UploadError) as caught:
        parse_upload(list(files.items()), fs_hz=fs_hz)
    return str(caught.value)


def wfdb_record(folder, signal_mv: np.ndarray, names: list[str], fs_hz: float = FS_HZ) -> dict:
    """Record ``rec`` in format 16 at 200 ADC units per mV, as nstdb stores its records."""
    wfdb.wrsamp(
        "rec",
        fs=fs_hz,
        units=["mV"] * len(names),
        sig_name=names,
        p_signal=signal_mv.reshape(len(signal_mv), -1),
        fmt=["16"] * len(names),
        adc_gain=[200.0] * len(names),
        baseline=[0] * len(names),
        write_dir=str(folder),
    )
    return {name: (folder / name).read_bytes() for name in ("rec.hea", "rec.dat")}


# --- 1. /predict and the diagnosis refuse a wrong unit, naming it -----------------------
# (/predict's API tests are in test_predict.py, the diagnosis's JSON case in test_diagnosis.py)


def a_record(fs_hz: float = 100.0) -> np.ndarray:
    """10 s of 12 leads in mV: the synthetic ECG, scaled differently per lead."""
    ecg = generate(10.0, fs=fs_hz, seed=5).signal_mv
    return np.column_stack([ecg * (0.3 + 0.15 * lead) for lead in range(12)])


@pytest.mark.parametrize(("scale", "unit"), [(1e-3, "volts"), (1e3, "microvolts")])
def test_the_diagnosis_refuses_a_record_in_the_wrong_unit_naming_it(scale, unit):
    with pytest.raises(ValueError) as caught:
        prepare_leads(a_record() * scale, 100.0)
    message = str(caught.value)
    # the largest lead is named: a wrong unit scales every lead alike
    assert message.startswith("lead V6's amplitude (the 99th percentile of |x - median|) is ")
    assert f"it looks like {unit} (" in message
    assert message.endswith("; leads must be in millivolts")


def test_a_small_lead_beside_ecg_sized_ones_is_not_a_wrong_unit():
    # a lead that was off, with some noise (range over the 0.01 mV flat limit): as an upload
    # stores such a lead with a note, the diagnosis does not call it volts
    record = a_record()
    record[:, 4] = 0.004 * np.random.default_rng(2).standard_normal(len(record))
    assert ecg_record_amplitude_problem(record, LEADS) is None
    assert prepare_leads(record, 100.0).shape == (1000, 12)
    # the whole record that small is refused
    assert "it looks like volts" in ecg_record_amplitude_problem(record * 0.004, LEADS)


def test_real_ptbxl_records_pass_the_unit_check():
    folder = physionet_folder("ptbxl", "records100/00000/00001_lr")
    headers = sorted((folder / "records100" / "00000").glob("*_lr.hea"))[:100]
    for header in headers:
        signal, fields = wfdb.rdsamp(str(header.with_suffix("")))
        names = [name.upper() for name in fields["sig_name"]]
        leads = signal[:, [names.index(lead) for lead in LEADS]]
        assert ecg_record_amplitude_problem(leads, LEADS) is None, header.name
        prepare_leads(leads, fields["fs"])  # nothing refused


# --- 2. a signal CSV names its unit in its header ---------------------------------------


@pytest.mark.parametrize(
    ("header", "per_mv"),
    [
        ("ecg_mv", 1.0),
        ("ecg_uv", 1e3),
        ("ECG_uV", 1e3),
        ("ecg_µV", 1e3),
        ("ecg_v", 1e-3),
        ('"ecg_V"', 1e-3),
    ],
)
def test_a_signal_csv_in_the_unit_its_header_names_is_read_as_millivolts(header, per_mv):
    # ecg_uv was refused (a value beyond 20 mV), ecg_v by its amplitude (volts)
    parsed = parse_upload([("ecg.csv", csv_bytes(header, ECG_MV * per_mv))], fs_hz=FS_HZ)
    assert parsed.lead_names == ["ECG"]
    # within half an ADC step of the file's values in millivolts
    assert np.max(np.abs(stored_mv(parsed) - ECG_MV)) <= 0.5 / parsed.gain_adc_per_mv + 1e-6


@pytest.mark.parametrize(("header", "unit"), [("ecg_mmHg", "mmHg"), ("ecg_", ""), ("ECG_nV", "nV")])
def test_a_signal_csv_header_with_an_unknown_unit_is_refused_naming_the_cell(header, unit):
    message = refused({"ecg.csv": csv_bytes(header, ECG_MV)}, fs_hz=FS_HZ)
    assert message == (
        f"ecg.csv line 1: the header cell {header!r} names the unit {unit!r}, which is not a "
        "voltage: a signal CSV names its unit as ecg_mv, ecg_uv or ecg_v (millivolts, "
        "microvolts, volts)"
    )


@pytest.mark.parametrize("header", [None, "ecg", "MLII", "lead_uv"])
def test_a_signal_csv_whose_header_names_no_unit_is_in_millivolts(header):
    parsed = parse_upload([("ecg.csv", csv_bytes(header, ECG_MV))], fs_hz=FS_HZ)
    assert np.allclose(stored_mv(parsed), ECG_MV, atol=1e-3)
    # in microvolts without saying so: refused naming the unit, and how to say it
    message = refused({"ecg.csv": csv_bytes(header, ECG_MV * 1e3)}, fs_hz=FS_HZ)
    assert message.startswith("ecg.csv: the signal's amplitude (the 99th percentile of ")
    assert "it looks like microvolts (" in message
    assert message.endswith(
        "a signal CSV is in millivolts unless its header line names the unit (ecg_mv, ecg_uv "
        "or ecg_v): convert it first, or name its unit"
    )


def test_a_signal_csv_with_the_wrong_unit_in_its_header_says_so():
    # millivolts under an ecg_uv header: read as microvolts they are a thousand times too small
    message = refused({"ecg.csv": csv_bytes("ecg_uv", ECG_MV)}, fs_hz=FS_HZ)
    assert "it looks like volts (" in message
    assert message.endswith("the values were read in uv, as the header line says: check that unit")
    values = ECG_MV * 1e3
    values[40] = 150_000.0  # 150 mV once converted
    message = refused({"ecg.csv": csv_bytes("ecg_uv", values)}, fs_hz=FS_HZ)
    assert message.startswith("ecg.csv line 42 (sample 41) is 150000 uv (150 mV; the header line")


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_celery")
def test_the_upload_api_stores_a_microvolt_csv_in_millivolts(client, clinician, patient):
    client.force_login(clinician)
    content = csv_bytes("ecg_uv", ECG_MV * 1e3)
    response = api_upload(client, patient.pk, {"ecg.csv": content}, fs_hz="250")
    assert response.status_code == 201, response.content
    recording = Recording.objects.get(pk=response.json()["id"])
    assert np.allclose(samples_mv(recording, 0, len(ECG_MV)), ECG_MV, atol=1e-3)

    bad = csv_bytes("ecg_counts", ECG_MV)
    response = api_upload(client, patient.pk, {"bad.csv": bad}, fs_hz="250")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("bad.csv line 1: the header cell 'ecg_counts'")
    assert Recording.objects.count() == 1


def test_the_command_line_reads_the_unit_of_a_csv_header(tmp_path):
    path = tmp_path / "strip.csv"
    path.write_bytes(csv_bytes("ecg_v", ECG_MV / 1e3))
    assert np.allclose(load_csv(path), ECG_MV, atol=1e-6)
    path.write_bytes(csv_bytes("ecg_furlong", ECG_MV))
    with pytest.raises(SystemExit, match="strip.csv line 1: the header cell 'ecg_furlong'"):
        load_csv(path)


# --- 3. the ±100 mV sample limit, the same for a CSV and a WFDB record -------------------


def noisy_ecg_mv(fs_hz: float = 360.0) -> np.ndarray:
    """10 s shaped like nstdb 118e_6 (record 118 with noise at -6 dB SNR): an ECG under
    strong noise, with excursions to 30.6 and -29 mV (synthesised, not PhysioNet data)."""
    ecg = generate(10.0, fs=fs_hz, seed=3).signal_mv
    noisy = ecg + 6.0 * np.random.default_rng(4).standard_normal(len(ecg))
    noisy[1800], noisy[1801] = 30.6, -29.0
    return noisy


def test_a_noisy_ecg_beyond_20_mv_is_accepted_as_csv_and_as_wfdb(tmp_path):
    signal = noisy_ecg_mv()
    # the old limit of 20 mV refused this CSV naming line 1801
    parsed = parse_upload([("noisy.csv", csv_bytes("ecg_mv", signal))], fs_hz=360.0)
    assert np.max(np.abs(stored_mv(parsed) - signal)) <= 0.5 / parsed.gain_adc_per_mv + 1e-6
    record = wfdb_record(tmp_path, signal, ["MLII"], fs_hz=360.0)
    assert parse_upload(list(record.items())).n_samples == len(signal)


def test_a_real_nstdb_118e_6_excerpt_is_accepted_as_csv_and_as_wfdb(tmp_path):
    folder = physionet_folder("nstdb", "118e_6")
    record = wfdb.rdrecord(str(folder / "118e_6"))
    lead = record.p_signal[:, 0]
    peak = int(np.argmax(np.abs(lead)))
    start = max(0, peak - 1800)
    excerpt = record.p_signal[start : start + 3600]  # 10 s around its largest value
    assert np.abs(excerpt[:, 0]).max() > 30.0  # 30.575 mV in MLII
    parsed = parse_upload([("118e_6.csv", csv_bytes("ecg_mv", excerpt[:, 0]))], fs_hz=360.0)
    assert parsed.n_samples == 3600
    files = wfdb_record(tmp_path, excerpt, list(record.sig_name), fs_hz=360.0)
    assert parse_upload(list(files.items())).lead_names == ["MLII", "V1"]


def test_a_value_beyond_100_mv_is_refused_by_csv_and_wfdb_alike(tmp_path):
    assert MAX_ECG_ABS_MV == 100.0
    signal = ECG_MV.copy()
    signal[300] = 100.5
    message = refused({"ecg.csv": csv_bytes("ecg_mv", signal)}, fs_hz=FS_HZ)
    assert message.startswith("ecg.csv line 302 (sample 301) is 100.5: a signal CSV is in")
    assert "an ECG stays within 100 mV" in message
    # the WFDB record's analysed lead had no such limit
    message = refused(wfdb_record(tmp_path, signal, ["MLII"]))
    assert message == (
        "rec.hea: signal 1 (MLII) is 100.5 mV at sample 300: no ECG in millivolts reaches "
        "100 mV; check the header's units and gain (ADC units per unit) for this signal"
    )
    signal[300] = 99.5  # within the limit: accepted in both
    parse_upload([("ecg.csv", csv_bytes("ecg_mv", signal))], fs_hz=FS_HZ)
    parse_upload(list(wfdb_record(tmp_path, signal, ["MLII"]).items()))


def test_a_csv_in_microvolts_is_named_by_its_amplitude_before_the_sample_limit():
    # the sample limit came first and said only "convert microvolts or ADC counts"
    buffer = io.StringIO()
    np.savetxt(buffer, ECG_MV * 1e3)
    message = refused({"ecg.csv": buffer.getvalue().encode()}, fs_hz=FS_HZ)
    assert "it looks like microvolts (" in message
