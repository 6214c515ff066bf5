"""Every bad upload is refused with a message naming the problem, and nothing is stored."""

import numpy as np
import pytest

from monitoring.models import Beat, Recording, SampleChunk
from tests.upload_helpers import api_upload, files_payload, signal_csv, synthetic_wfdb

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def refused(response, status: int = 400) -> str:
    """The error message of a refused upload, after checking that nothing was stored."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert Recording.objects.count() == 0
    assert SampleChunk.objects.count() == 0
    assert Beat.objects.count() == 0
    return response.json()["detail"]


def rows_text(n_rows: int, n_values: int, label: str | None = None) -> list[str]:
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(n_rows):
        cells = [f"{v:.4f}" for v in rng.random(n_values)]
        if label is not None:
            cells.append(label)
        lines.append(",".join(cells))
    return lines


# --- WFDB -------------------------------------------------------------------------------


def test_it_refuses_a_dat_file_shorter_than_its_header_says(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    files["syn.dat"] = files["syn.dat"][:-100]
    message = refused(api_upload(api, patient.pk, files))
    assert "syn.dat holds" in message and "the header and the data disagree" in message


def test_it_refuses_a_dat_file_longer_than_its_header_says(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    files["syn.dat"] += b"\x00" * 40
    assert "the header and the data disagree" in refused(api_upload(api, patient.pk, files))


def test_it_refuses_a_header_without_its_dat_file(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    del files["syn.dat"]
    message = refused(api_upload(api, patient.pk, files))
    assert message.startswith("missing syn.dat")


def test_it_refuses_a_dat_file_without_its_header(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    del files["syn.hea"]
    assert "needs its .hea header" in refused(api_upload(api, patient.pk, files))


def test_it_refuses_a_header_whose_signal_count_disagrees(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    first, rest = files["syn.hea"].decode().split("\n", 1)
    files["syn.hea"] = (first.replace("syn 2 ", "syn 3 ", 1) + "\n" + rest).encode()
    message = refused(api_upload(api, patient.pk, files))
    assert "declares 3 signals" in message and "describes 2" in message


def test_it_refuses_a_header_that_points_outside_the_upload(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    files["syn.hea"] = files["syn.hea"].replace(b"syn.dat", b"../etc/syn.dat")
    # wfdb itself refuses a path in a signal line; either way nothing outside is read
    assert refused(api_upload(api, patient.pk, files)).startswith("syn.hea ")


def test_it_refuses_a_header_for_another_record_name(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    files["other.hea"] = files.pop("syn.hea")
    assert "describes record 'syn'" in refused(api_upload(api, patient.pk, files))


def test_it_refuses_a_sampling_rate_out_of_range_in_a_header(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    files["syn.hea"] = files["syn.hea"].replace(b"syn 2 250 ", b"syn 2 25 ", 1)
    assert "between 100 and 2000 Hz" in refused(api_upload(api, patient.pk, files))


def test_it_refuses_annotations_named_for_another_record(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    files["100.atr"] = b"\x00\x00"
    assert "100.atr is not for this record" in refused(api_upload(api, patient.pk, files))


def test_it_refuses_annotations_past_the_end_of_the_record(api, patient, tmp_path):
    import wfdb

    files = synthetic_wfdb(tmp_path, seconds=10.0)
    # beats of a longer recording, under this record's name
    wfdb.wrann(
        "syn",
        "atr",
        np.array([100, 500, 5000]),
        np.array(["N", "N", "N"]),
        write_dir=str(tmp_path),
        fs=250,
    )
    files["syn.atr"] = (tmp_path / "syn.atr").read_bytes()
    message = refused(api_upload(api, patient.pk, files))
    assert "syn.atr is not for this record" in message and "sample 5000" in message


def test_it_refuses_annotations_made_at_another_rate(api, patient, tmp_path):
    import wfdb

    files = synthetic_wfdb(tmp_path)
    wfdb.wrann(
        "syn", "atr", np.array([100, 300]), np.array(["N", "N"]), write_dir=str(tmp_path), fs=360
    )
    files["syn.atr"] = (tmp_path / "syn.atr").read_bytes()
    assert "made at 360 Hz" in refused(api_upload(api, patient.pk, files))


def test_it_refuses_an_annotation_file_that_is_not_one(api, patient, tmp_path):
    files = synthetic_wfdb(tmp_path)
    files["syn.atr"] = b"this is not an annotation file"
    assert "syn.atr" in refused(api_upload(api, patient.pk, files))


# --- CSV --------------------------------------------------------------------------------


def test_it_refuses_an_empty_file(api, patient):
    assert refused(api_upload(api, patient.pk, {"ecg.csv": b"\n \n"})) == "ecg.csv is empty"


def test_it_refuses_a_request_without_files(api, patient):
    assert "no file was uploaded" in refused(api.post(f"/api/patients/{patient.pk}/uploads/"))


def test_it_refuses_a_header_line_without_data(api, patient):
    message = refused(api_upload(api, patient.pk, {"ecg.csv": b"ecg_mv\n"}, fs_hz=250))
    assert "has a header line but no data" in message


def test_it_refuses_a_non_numeric_cell_naming_its_line(api, patient):
    text = "ecg_mv\n0.1\n0.2\n0.3\noops\n" + "0.1\n" * 1000
    message = refused(api_upload(api, patient.pk, {"ecg.csv": text.encode()}, fs_hz=250))
    assert message == "ecg.csv line 5: 'oops' is not a number"


def test_it_refuses_a_signal_csv_not_in_millivolts(api, patient):
    # ADC counts around a baseline of 1024, as a file saved from a device without its gain
    text = "ecg\n" + "1024\n" * 5 + "1100\n" * 995
    message = refused(api_upload(api, patient.pk, {"ecg.csv": text.encode()}, fs_hz=250))
    assert message.startswith("ecg.csv line 2 (sample 1) is 1024: a signal CSV is in millivolts")
    assert "convert microvolts or ADC counts to millivolts first" in message
    assert not Recording.objects.exists()  # nothing partial is stored
    # a large artefact within 20 mV is an ECG still
    text = "0.1\n" * 600 + "-19.5\n" + "0.1\n" * 600
    response = api_upload(api, patient.pk, {"ecg.csv": text.encode()}, fs_hz=250)
    assert response.status_code == 201, response.content


def test_it_refuses_nan_in_a_signal(api, patient):
    text = "0.1\n" * 600 + "nan\n" + "0.1\n" * 10
    message = refused(api_upload(api, patient.pk, {"ecg.csv": text.encode()}, fs_hz=250))
    assert message.startswith("ecg.csv line 601: 'nan' is not a finite number")


def test_it_refuses_infinity_in_a_beat_row(api, patient):
    lines = rows_text(3, 216)
    cells = lines[1].split(",")
    cells[10] = "inf"
    lines[1] = ",".join(cells)
    message = refused(api_upload(api, patient.pk, {"beats.csv": "\n".join(lines).encode()}))
    assert message.startswith("beats.csv line 2 (row 2, value 11): 'inf' is not a finite number")


def test_it_refuses_a_signal_line_with_two_columns(api, patient):
    text = "0.1\n" * 700 + "0.2,0.3\n"
    message = refused(api_upload(api, patient.pk, {"ecg.csv": text.encode()}, fs_hz=250))
    assert "line 701 has 2 columns" in message


def test_it_refuses_a_beat_row_of_the_wrong_length(api, patient):
    lines = rows_text(5, 187, "0")
    lines[3] = lines[3].rsplit(",", 2)[0]  # a row that lost a value (and its label)
    message = refused(api_upload(api, patient.pk, {"beats.csv": "\n".join(lines).encode()}))
    assert message.startswith("beats.csv line 4 (row 4) has 186 values; the rows above have 188")


def test_it_refuses_rows_of_a_length_no_layout_has(api, patient):
    lines = rows_text(3, 100)
    message = refused(api_upload(api, patient.pk, {"beats.csv": "\n".join(lines).encode()}))
    assert "has 100 values" in message and "187" in message and "216" in message


def test_it_refuses_an_unknown_label_naming_its_row(api, patient):
    lines = rows_text(4, 187, "N")
    lines[2] = lines[2][: lines[2].rindex(",")] + ",7"
    message = refused(api_upload(api, patient.pk, {"beats.csv": "\n".join(lines).encode()}))
    assert message == "beats.csv line 3 (row 3): label '7' is not one of 0-4 or N, S, V, F, Q"


def test_it_refuses_a_signal_csv_without_a_sampling_rate(api, patient):
    message = refused(api_upload(api, patient.pk, {"ecg.csv": signal_csv(10)}))
    assert "sampling rate" in message and "missing" in message


def test_it_refuses_a_sampling_rate_out_of_range(api, patient):
    message = refused(api_upload(api, patient.pk, {"ecg.csv": signal_csv(10)}, fs_hz=5000))
    assert "5000 Hz: it must be between 100 and 2000 Hz" in message
    # below what the QRS detector takes: refused now rather than stored and failed later
    message = refused(api_upload(api, patient.pk, {"ecg.csv": signal_csv(10)}, fs_hz=60))
    assert "60 Hz: it must be between 100 and 2000 Hz" in message


def test_it_refuses_a_signal_too_short_to_analyse(api, patient):
    message = refused(api_upload(api, patient.pk, {"ecg.csv": b"0.1\n0.2\n0.3\n"}, fs_hz=250))
    assert "upload at least 2 s" in message


def test_it_refuses_a_binary_file_posing_as_csv(api, patient):
    message = refused(api_upload(api, patient.pk, {"ecg.csv": b"\xff\xfe\x00\x81" * 10}))
    assert "is not a text CSV file" in message


def test_it_refuses_a_file_name_that_could_escape_the_upload_folder():
    from monitoring.uploads import UploadError, parse_upload

    for name in ("..", ".hea", "a\\..\\b.csv", "x\x00.csv"):
        with pytest.raises(UploadError, match="is not allowed"):
            parse_upload([(name, b"0.1\n" * 1000)], fs_hz=250)
    assert parse_upload([("ecg (1).csv", b"0.1\n" * 1000)], fs_hz=250).n_samples == 1000


def test_it_refuses_an_unsupported_file_type(api, patient):
    assert "unsupported file type" in refused(api_upload(api, patient.pk, {"ecg.xlsx": b"PK"}))


def test_it_refuses_an_upload_over_the_size_limit_with_413(api, patient, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    message = refused(api_upload(api, patient.pk, {"ecg.csv": signal_csv(10)}, fs_hz=250), 413)
    assert "larger than the limit of 1,000 bytes" in message


def test_the_page_shows_the_error_in_the_form_and_stores_nothing(client, clinician, patient):
    client.force_login(clinician)
    text = "0.1\n" * 600 + "x\n"
    response = client.post(
        f"/patients/{patient.pk}/upload/",
        {"files": files_payload({"ecg.csv": text.encode()}), "fs_hz": "250"},
    )
    assert response.status_code == 400
    assert b"ecg.csv line 601: &#x27;x&#x27; is not a number" in response.content
    assert b'value="250"' in response.content  # what the user typed stays in the form
    assert Recording.objects.count() == 0


def test_the_page_answers_413_for_a_huge_upload(client, clinician, patient, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    client.force_login(clinician)
    response = client.post(
        f"/patients/{patient.pk}/upload/",
        {"files": files_payload({"ecg.csv": signal_csv(10)}), "fs_hz": "250"},
    )
    assert response.status_code == 413
    assert b"larger than the limit" in response.content
    assert Recording.objects.count() == 0
