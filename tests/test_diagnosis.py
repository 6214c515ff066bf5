"""POST /api/diagnosis/ (the PTB-XL models, issue 7), its examples, a stored 12-lead upload,
and the /diagnosis/ page's access and content."""

import json
import time

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from scipy.signal import resample_poly

from inference.datasets import data_dir
from inference.datasets.ptbxl import (
    FEATURE_COLUMNS,
    LEADS,
    RAW_FEATURES,
    SUPERCLASSES,
    copy_summary,
    read_table,
)
from inference.ptbxl_models import load_model, metadata_row, predict, scaler_from_card
from monitoring.api.diagnosis import (
    EXAMPLES_DIR,
    example_leads,
    leads_from_recording,
    load_examples,
)
from monitoring.models import ApiToken, Recording
from monitoring.uploads import ParsedUpload, parse_upload, quantize, store_upload
from tests.upload_helpers import api_upload, files_payload

pytestmark = pytest.mark.django_db

URL = "/api/diagnosis/"
EXAMPLE = load_examples()["records"][2]  # ecg_id 274: MI, STTC, HYP, all metadata known
DISPLAY = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


@pytest.fixture(scope="module")
def leads_mv() -> np.ndarray:
    """The example's (1000, 12) mV at 100 Hz."""
    return example_leads(EXAMPLE)


def post(client, body, **extra):
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, payload, content_type="application/json", **extra)


def as_json_leads(signal: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 4) for v in lead] for lead in signal.T]


def example_files() -> dict[str, bytes]:
    return {
        f"{EXAMPLE['record']}{suffix}": (EXAMPLES_DIR / f"{EXAMPLE['record']}{suffix}").read_bytes()
        for suffix in (".hea", ".dat")
    }


def detail(response) -> str:
    assert response.status_code == 400, response.content
    return response.json()["detail"]


# --- Happy paths ----------------------------------------------------------------------------


def test_json_leads_get_the_ecg_model_and_the_same_answer_as_predict(api, leads_mv):
    body = {"leads": as_json_leads(leads_mv), "fs_hz": 100, "metadata": EXAMPLE["metadata"]}
    response = post(api, body)
    assert response.status_code == 200, response.content
    answer = response.json()
    direct = predict(np.array(body["leads"]).T, 100, EXAMPLE["metadata"])
    assert answer["model"]["name"] == direct["model"] == "ptbxl-model02"
    assert answer["model"]["mode"] == answer["mode"] == "ecg+metadata"
    assert answer["model"]["version"] and answer["model"]["card"].endswith("ptbxl-model02.md")
    assert list(answer["probabilities"]) == list(SUPERCLASSES)
    for name in SUPERCLASSES:
        assert answer["probabilities"][name] == pytest.approx(direct["probabilities"][name])
    assert answer["positive"] == [
        name for name in SUPERCLASSES if answer["probabilities"][name] >= answer["thresholds"][name]
    ]
    assert answer["imputed"] == []  # every feature of record 274 is known
    assert answer["record"] == {"source": "json", "lead_names": DISPLAY}
    assert "not a medical device" in answer["disclaimer"]


def test_named_leads_in_another_order_give_the_same_answer(api, leads_mv):
    ordered = post(api, {"leads": as_json_leads(leads_mv), "fs_hz": 100}).json()
    shuffle = [11, 0, 5, 3, 1, 2, 4, 6, 8, 7, 10, 9]
    names = [["i", "II", "iii", "AVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"][k]
             for k in shuffle]  # fmt: skip
    body = {"leads": as_json_leads(leads_mv[:, shuffle]), "fs_hz": 100, "lead_names": names}
    shuffled = post(api, body).json()
    assert shuffled["probabilities"] == pytest.approx(ordered["probabilities"])
    assert ordered["imputed"] == list(RAW_FEATURES)  # no metadata: all imputed


def test_a_500_hz_record_is_resampled_to_what_the_model_reads(api, leads_mv):
    # The same record at 500 Hz, band-limited as a 500 Hz recorder would capture it. (Linear
    # interpolation is not the same record: it blunts the QRS by up to 0.15 mV, which moved the
    # retrained model02's HYP probability by 0.08.)
    upsampled = resample_poly(leads_mv, 5, 1, axis=0)
    at_100 = post(api, {"leads": as_json_leads(leads_mv), "fs_hz": 100}).json()
    at_500 = post(api, {"leads": as_json_leads(upsampled), "fs_hz": 500}).json()
    for name in SUPERCLASSES:
        assert at_500["probabilities"][name] == pytest.approx(
            at_100["probabilities"][name], abs=0.01
        )


def test_a_record_within_10_ms_of_10_s_is_read_at_any_rate(api, leads_mv):
    # The tolerance is one sample of the models' 100 Hz, not one sample at the record's rate:
    # 5002 samples at 500 Hz (10.004 s) resample to the same 1000 samples as 5000 do, and were
    # refused with a message that said "10.00 s" and asked for 10 s.
    at_500 = resample_poly(leads_mv, 5, 1, axis=0)
    exact = post(api, {"leads": as_json_leads(at_500), "fs_hz": 500}).json()
    for signal in (np.vstack([at_500, at_500[-2:]]), at_500[:-5]):
        answer = post(api, {"leads": as_json_leads(signal), "fs_hz": 500})
        assert answer.status_code == 200, answer.content
        assert answer.json()["probabilities"] == pytest.approx(exact["probabilities"], abs=0.01)
    too_long = post(api, {"leads": as_json_leads(np.vstack([at_500, at_500[-6:]])), "fs_hz": 500})
    assert detail(too_long) == (
        "leads hold 5006 samples = 10.01 s at 500 Hz; the models read 10 s records (5000 "
        "samples at this rate, give or take 5)"
    )
    # at 100 Hz it stays one sample
    assert "give or take 1" in detail(
        post(api, {"leads": as_json_leads(np.vstack([leads_mv, leads_mv[-2:]])), "fs_hz": 100})
    )


def test_many_channels_are_checked_in_linear_time_and_named_briefly(api, leads_mv):
    # Lead names were matched with list.count per name: 40,000 names "I" (a 0.4 MB body) took
    # 30 s of a worker, and the time grew with the square of the count. The refusals list a
    # few names or lengths, not the whole request.
    n_channels = 40_000
    started = time.perf_counter()
    doubled = post(
        api, {"leads": [[0.0]] * n_channels, "fs_hz": 100, "lead_names": ["I"] * n_channels}
    )
    assert time.perf_counter() - started < 5
    assert detail(doubled) == '"lead_names" gives lead I twice'
    names = [f"ch{i}" for i in range(n_channels)]
    unknown = detail(post(api, {"leads": [[0.0]] * n_channels, "fs_hz": 100, "lead_names": names}))
    assert unknown.endswith(
        "; not lead names: " + ", ".join(names[:20]) + f" and {n_channels - 20} more"
    )
    assert len(unknown) < 500
    ragged = {
        "leads": [*as_json_leads(leads_mv), *[[0.0]] * n_channels],
        "fs_hz": 100,
        "lead_names": DISPLAY + names,
    }
    assert detail(post(api, ragged)) == (
        f"the leads differ in length ({12 + n_channels} lists of 1, 1000 samples): every lead "
        "must cover the same 10 s"
    )


def test_a_wfdb_upload_with_form_metadata_matches_the_json_request(api, leads_mv):
    form = {
        name: ("" if value is None else str(value)) for name, value in EXAMPLE["metadata"].items()
    }
    form["weight_kg"] = "82"
    response = api.post(URL, {"files": files_payload(example_files()), **form})
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["mode"] == "ecg+metadata"
    assert answer["record"]["source"] == "wfdb" and answer["record"]["name"] == EXAMPLE["record"]
    assert answer["record"]["lead_names"] == list(LEADS)  # as the header spells them
    assert answer["metadata"]["weight_kg"] == 82.0
    metadata = EXAMPLE["metadata"] | {"weight_kg": 82}
    json_answer = post(
        api, {"leads": as_json_leads(leads_mv), "fs_hz": 100, "metadata": metadata}
    ).json()
    assert answer["probabilities"] == pytest.approx(json_answer["probabilities"], abs=1e-4)


def test_metadata_alone_gets_the_metadata_only_model(api):
    answer = post(api, {"metadata": {"age_years": 70, "sex_female": 1, "heart_axis": "LAD"}})
    assert answer.status_code == 200, answer.content
    answer = answer.json()
    assert answer["model"]["name"] == "ptbxl-model01" and answer["mode"] == "metadata-only"
    assert answer["record"] is None
    assert answer["imputed"] == ["height_cm", "weight_kg", "pacemaker", "device_cs"]
    # and what the model read instead: the card's training medians
    fill = load_model("ptbxl-model01")[1]["metadata_scaler"]["fill_values"]
    assert answer["imputed_values"] == {name: fill[name] for name in answer["imputed"]}
    direct = predict(None, None, {"age_years": 70, "sex_female": 1, "heart_axis": "LAD"})
    assert answer["probabilities"] == pytest.approx(direct["probabilities"])
    # the same through a form without files
    form = api.post(URL, {"files": [], "age_years": "70", "sex_female": "1", "heart_axis": "LAD"})
    assert form.status_code == 200, form.content
    assert form.json()["probabilities"] == pytest.approx(direct["probabilities"])


# --- Refusals -------------------------------------------------------------------------------


def bad_leads(leads_mv: np.ndarray, case: str) -> dict:
    leads = as_json_leads(leads_mv)
    body = {"leads": leads, "fs_hz": 100}
    if case == "11 leads":
        body["leads"] = leads[:11]
    elif case == "11 named leads":
        body |= {"leads": leads[:11], "lead_names": DISPLAY[:11]}
    elif case == "unknown lead name":
        body["lead_names"] = [*DISPLAY[:11], "V7"]
    elif case == "lead twice":
        body["lead_names"] = [*DISPLAY[:11], "V5"]
    elif case == "names do not match":
        body["lead_names"] = DISPLAY[:10]
    elif case == "ragged":
        body["leads"] = [*leads[:11], leads[11][:-5]]
    elif case == "samples x leads":
        body["leads"] = [list(row) for row in zip(*leads, strict=True)]
    elif case == "not lists":
        body["leads"] = [1.0, 2.0]
    elif case == "a null":
        leads[3][17] = None
    elif case == "a string":
        leads[3][17] = "0.1"
    elif case == "9 s":
        body["leads"] = [lead[:900] for lead in leads]
    elif case == "rate too low":
        body["fs_hz"] = 50
    elif case == "rate says 11 s":
        body["fs_hz"] = 110
    elif case == "rate missing":
        del body["fs_hz"]
    elif case == "rate a string":
        body["fs_hz"] = "100"
    elif case == "microvolts":
        body["leads"] = [[1000 * v for v in lead] for lead in leads]
    elif case == "volts":  # read as twelve flat leads before the amplitude check
        body["leads"] = [[v / 1000 for v in lead] for lead in leads]
    elif case == "flat lead":
        body["leads"] = [*leads[:6], [0.0] * 1000, *leads[7:]]
    elif case == "flat aVL":  # named as the request names it, not as PTB-XL's AVL
        body["leads"] = [*leads[:4], [0.0] * 1000, *leads[5:]]
    elif case == "aVR twice":
        body["lead_names"] = [*DISPLAY[:11], "AVR"]
    elif case == "unknown field":
        body["fs"] = 100
    elif case == "recording and leads":
        body["recording_id"] = 1
    return body


BAD_LEADS = {
    "11 leads": "holds 11 leads; a 12-lead record needs 12",
    "11 named leads": "lacks lead V6",
    "unknown lead name": "lacks lead V6: a 12-lead record needs I, II, III, aVR, aVL, aVF, V1, V2, "
    "V3, V4, V5, V6; not lead names: V7",
    "lead twice": "gives lead V5 twice",
    "names do not match": '"lead_names" must be a list with one name per lead (12)',
    "ragged": "the leads differ in length",
    "samples x leads": "holds 1000 leads; a 12-lead record needs 12, in the order I, II, III, "
    'aVR, aVL, aVF, V1, V2, V3, V4, V5, V6 (or name them in "lead_names") (it looks like '
    "samples x leads: send one list per lead)",
    "not lists": '"leads" must be a list of 12 lists',
    "a null": "lead aVR sample 17 is None, not a number",
    "a string": "lead aVR sample 17 is '0.1', not a number",
    "9 s": "leads hold 900 samples = 9.00 s at 100 Hz; the models read 10 s records",
    "rate too low": "fs_hz 50 is outside 100-2000 Hz",
    "rate says 11 s": "1000 samples = 9.09 s at 110 Hz",
    "rate missing": '"fs_hz" is missing',
    "rate a string": "\"fs_hz\" must be a number of Hz, got '100'",
    "microvolts": "it looks like microvolts (",
    "volts": "it looks like volts (",
    "flat lead": "lead V1 is flat",
    "flat aVL": "lead aVL is flat",
    "aVR twice": "gives lead aVR twice",
    "unknown field": "unknown field fs; expected leads, fs_hz",
    "recording and leads": 'give "leads" or "recording_id", not both',
}


@pytest.mark.parametrize("case", BAD_LEADS)
def test_bad_leads_get_a_400_naming_the_problem(api, leads_mv, case):
    assert BAD_LEADS[case] in detail(post(api, bad_leads(leads_mv, case)))


BAD_METADATA = {
    "age -5": ({"age_years": -5}, "metadata age_years -5 is outside 0-120"),
    "weight 900": ({"weight_kg": 900}, "metadata weight_kg 900 is outside 2-300"),
    "height 20": ({"height_cm": 20}, "metadata height_cm 20 is outside 40-230"),
    "sex 2": ({"sex_female": 2}, "metadata sex_female must be 0 or 1"),
    "age as text": ({"age_years": "55"}, "metadata age_years must be a finite number"),
    "unknown key": ({"age": 55}, "unknown metadata age; expected age_years"),
    "bad axis": ({"heart_axis": "UP"}, "metadata heart_axis 'UP' is not one of"),
    "axis 3": ({"heart_axis": 3}, "heart_axis must be -2, -1, 0, 1 or 2"),
    "not an object": ([55, 0], '"metadata" must be an object'),
}


@pytest.mark.parametrize("case", BAD_METADATA)
def test_out_of_range_metadata_gets_a_400(api, leads_mv, case):
    metadata, message = BAD_METADATA[case]
    assert message in detail(post(api, {"metadata": metadata}))
    # with a waveform too: the metadata is checked all the same
    with_leads = {"leads": as_json_leads(leads_mv), "fs_hz": 100, "metadata": metadata}
    assert message in detail(post(api, with_leads))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "give a 12-lead record, metadata, or both"),
        ({"metadata": {}}, "give a 12-lead record, metadata, or both"),
        ([1, 2], "the body must be a JSON object"),
        ({"fs_hz": 100}, '"fs_hz" was given without "leads"'),
        ('{"leads": [[NaN]], "fs_hz": 100}', "malformed request body"),
        ('{"metadata": {"age_years": 5', "malformed request body"),
    ],
)
def test_empty_or_malformed_bodies_get_a_400(api, body, message):
    assert message in detail(post(api, body))


def test_json_nested_too_deeply_gets_a_400(api):
    # 2.2 kB of brackets: Python's decoder raised RecursionError, a 500 (an HTML page)
    response = post(api, "[" * 1100 + "]" * 1100)
    assert detail(response) == "malformed request body: JSON nested too deeply"


BIG = "1" + "0" * 400  # an integer JSON allows and a float cannot hold


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"leads": LEADS, "fs_hz": BIG}', f'"fs_hz" {BIG[:18]}'),
        ('{"metadata": {"age_years": BIG}}', "metadata age_years must be a finite number"),
        ('{"recording_id": RID, "start_s": BIG}', '"start_s" must be a number of seconds'),
        # finite, but start_s * fs_hz is not
        ('{"recording_id": RID, "start_s": 1e308}', '10 s from "start_s" 1e+308 s run past'),
    ],
    ids=["fs_hz", "age_years", "start_s int", "start_s 1e308"],
)
def test_numbers_beyond_float_range_get_a_400_naming_the_field(
    api, leads_mv, twelve_lead_recording, body, message
):
    # each was a 500: OverflowError from math.isfinite, float() or round()
    raw = (
        body.replace("LEADS", json.dumps(as_json_leads(leads_mv)))
        .replace("BIG", BIG)
        .replace("RID", str(twelve_lead_recording.pk))
    )
    assert message in detail(post(api, raw))


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"age_years": True}, "metadata age_years must be a number, got true"),
        ({"heart_axis": False}, "metadata heart_axis must be a number, got false"),
        ({"weight_kg": True}, "only sex_female, pacemaker, device_cs may be true or false"),
    ],
)
def test_true_and_false_are_refused_for_measurements(api, metadata, message):
    # an age of true was read as 1 year, a heart axis of false as normal
    assert message in detail(post(api, {"metadata": metadata}))


def test_true_and_false_are_read_as_1_and_0_for_the_yes_or_no_features(api):
    answer = post(api, {"metadata": {"sex_female": True, "pacemaker": False, "age_years": 60}})
    assert answer.status_code == 200, answer.content
    assert {"sex_female", "pacemaker"}.isdisjoint(answer.json()["imputed"])
    numbers = post(api, {"metadata": {"sex_female": 1, "pacemaker": 0, "age_years": 60}})
    assert answer.json()["probabilities"] == numbers.json()["probabilities"]


def test_fields_the_request_would_ignore_are_refused(api, patient, leads_mv):
    recording = store_upload(patient, parse_upload(list(example_files().items())))
    for extra in ({"fs_hz": 500}, {"lead_names": DISPLAY}):
        # the stored recording's own rate and lead names were used, without a word
        body = {"recording_id": recording.pk} | extra
        message = detail(post(api, body))
        assert f'"{next(iter(extra))}" was given with "recording_id"' in message
    with_start = {"leads": as_json_leads(leads_mv), "fs_hz": 100, "start_s": 2}
    assert '"start_s" was given with "leads"' in detail(post(api, with_start))


def test_form_metadata_and_files_are_checked(api):
    assert "metadata age_years must be a number, got 'old'" in detail(
        api.post(URL, {"files": files_payload(example_files()), "age_years": "old"})
    )
    assert "unknown form field age" in detail(api.post(URL, {"age": "50"}))
    assert "metadata weight_kg 900 is outside" in detail(api.post(URL, {"weight_kg": "900"}))
    files = example_files()
    del files[f"{EXAMPLE['record']}.dat"]
    without_dat = api.post(URL, {"files": files_payload(files)})
    assert f"missing {EXAMPLE['record']}.dat" in detail(without_dat)
    csv = {"ecg.csv": b"0.1\n0.2\n"}
    assert "upload a WFDB record" in detail(api.post(URL, {"files": files_payload(csv)}))


def test_a_wfdb_record_without_the_12_leads_is_refused(api, tmp_path, leads_mv):
    import wfdb

    wfdb.wrsamp(
        "two",
        fs=100,
        units=["mV", "mV"],
        sig_name=["MLII", "V1"],
        p_signal=leads_mv[:, [1, 6]],
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    files = {name: (tmp_path / name).read_bytes() for name in ("two.hea", "two.dat")}
    message = detail(api.post(URL, {"files": files_payload(files)}))
    assert "record two lacks lead I, II, III, aVR, aVL, aVF, V2" in message
    assert "not lead names: MLII" in message


def test_it_answers_415_413_and_401(api, client, settings, leads_mv):
    assert api.post(URL, "leads=1", content_type="text/plain").status_code == 415
    form = api.post(URL, "age_years=50", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    settings.PREDICT_MAX_BODY_BYTES = 10_000
    big = post(api, {"leads": as_json_leads(leads_mv), "fs_hz": 100})
    assert big.status_code == 413 and "exceeds the 10000-byte limit" in big.json()["detail"]
    upload = api.post(URL, {"files": files_payload(example_files())})
    assert upload.status_code == 413
    api.logout()
    assert post(client, {"metadata": {"age_years": 50}}).status_code == 401
    assert client.get("/api/diagnosis/examples/").status_code == 401


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/diagnosis/examples/"),
        ("get", f"/api/diagnosis/examples/{EXAMPLE['id']}/"),
        ("get", "/api/diagnosis/examples/no-such-example/"),
        ("post", "/api/diagnosis/record/"),
    ],
)
def test_the_examples_and_the_record_reader_need_credentials(client, method, url):
    if method == "post":
        response = client.post(url, {"files": files_payload(example_files())})
    else:
        response = client.get(url)
    assert response.status_code == 401, (url, response.status_code)
    assert "leads" not in response.json()  # no record data leaks to an anonymous caller


def test_a_token_works_as_well_as_a_session(client, clinician):
    _, key = ApiToken.issue(clinician)
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    response = post(client, {"metadata": {"age_years": 50}}, **auth)
    assert response.status_code == 200


# --- A stored 12-lead recording ------------------------------------------------------------


@pytest.mark.usefixtures("eager_celery")
def test_the_upload_path_stores_and_analyses_a_12_lead_wfdb_record(
    client, clinician, patient, django_capture_on_commit_callbacks
):
    client.force_login(clinician)
    parsed = parse_upload(list(example_files().items()))
    assert parsed.adc.shape == (1000, 12) and parsed.lead_names == list(LEADS)
    assert parsed.lead_names[parsed.analysis_lead] == "II"  # the beat models read lead II
    with django_capture_on_commit_callbacks(execute=True):  # the analysis, queued on commit
        response = api_upload(client, patient.pk, example_files())
    assert response.status_code in (201, 202), response.content
    recording = Recording.objects.get(patient=patient)
    assert recording.n_channels == 12 and recording.lead_names == list(LEADS)
    assert recording.sampling_rate_hz == 100.0 and recording.end_sample == 1000
    assert recording.analysis_status == "done", recording.analysis_error


def test_a_stored_recording_is_diagnosed_by_id_if_visible(
    client, clinician, other_clinician, staff_user, patient, leads_mv
):
    recording = store_upload(patient, parse_upload(list(example_files().items())))
    body = {"recording_id": recording.pk, "metadata": EXAMPLE["metadata"]}
    client.force_login(clinician)
    stored = post(client, body)
    assert stored.status_code == 200, stored.content
    assert stored.json()["record"]["source"] == "recording"
    direct = post(
        client, {"leads": as_json_leads(leads_mv), "fs_hz": 100, "metadata": EXAMPLE["metadata"]}
    ).json()
    assert stored.json()["probabilities"] == pytest.approx(direct["probabilities"], abs=1e-4)
    assert "run past its end" in detail(post(client, body | {"start_s": 0.5}))
    # 1e999 reads as infinity: a 400 naming start_s, not a 500
    infinite = client.post(
        "/api/diagnosis/",
        data=f'{{"recording_id": {recording.pk}, "start_s": 1e999}}',
        content_type="application/json",
    )
    assert infinite.status_code == 400 and "start_s" in infinite.json()["detail"]
    client.force_login(other_clinician)  # not assigned to the patient: as if absent
    hidden = post(client, body)
    assert hidden.status_code == 404 and "no recording" in hidden.json()["detail"]
    client.force_login(staff_user)
    assert post(client, body).status_code == 200


def test_a_stored_12_lead_window_reads_each_chunk_once(patient, leads_mv):
    # 150 s at 500 Hz: two chunks of 65,536 frames; 10 s from 128 s straddle them. Read lead
    # by lead, the window fetched and decoded both 1.5 MB chunks 12 times (24 queries).
    at_500 = np.vstack([resample_poly(leads_mv, 5, 1, axis=0)] * 15)
    adc, gain = quantize(at_500)
    parsed = ParsedUpload(
        format="wfdb",
        source_name="long",
        fs_hz=500.0,
        adc=adc[:, ::-1],  # stored V6 ... I: the window is put back in the standard order
        gain_adc_per_mv=gain,
        baseline_adc=0,
        lead_names=DISPLAY[::-1],
        analysis_lead=10,
    )
    recording = store_upload(patient, parsed)
    assert recording.chunks.count() == 2
    with CaptureQueriesContext(connection) as queries:
        signal, fs_hz, _ = leads_from_recording(patient.clinicians.get(), recording.pk, 128)
    chunk_reads = [q for q in queries.captured_queries if "samplechunk" in q["sql"].lower()]
    assert len(chunk_reads) == 2, [q["sql"] for q in chunk_reads]
    assert fs_hz == 500.0 and signal.shape == (5000, 12)
    start = 128 * 500
    assert signal == pytest.approx(adc[start : start + 5000] / gain)


# --- Examples, the record reader, the page -------------------------------------------------


def test_the_examples_are_test_fold_records_with_their_rows(api):
    listing = api.get("/api/diagnosis/examples/").json()
    assert "CC BY 4.0" in listing["attribution"]
    records = listing["records"]
    assert 1 <= len(records) <= 3
    assert all(record["strat_fold"] == 10 for record in records)
    one = api.get(f"/api/diagnosis/examples/{records[0]['id']}/").json()
    assert one["lead_names"] == DISPLAY
    assert len(one["leads"]) == 12 and {len(lead) for lead in one["leads"]} == {1000}
    assert api.get("/api/diagnosis/examples/nope/").status_code == 404


def test_the_examples_match_the_ptbxl_copy_when_there_is_one():
    try:
        folder = data_dir() / "ptbxl"
    except FileNotFoundError as exc:  # no data folder at all
        pytest.skip(str(exc))
    if not (folder / "ptbxl_database.csv").is_file():
        pytest.skip(f"no PTB-XL copy in {folder}")
    table = read_table(folder)
    for example in load_examples()["records"]:
        row = int(np.flatnonzero(table.ecg_ids == example["ecg_id"])[0])
        assert table.strat_folds[row] == 10  # never a training or validation record
        assert table.filenames[100][row].endswith(example["record"])
        shipped = [np.nan if value is None else value for value in example["metadata"].values()]
        np.testing.assert_array_equal(table.metadata[row], shipped)
        for suffix in (".hea", ".dat"):
            original = (folder / (table.filenames[100][row] + suffix)).read_bytes()
            assert (EXAMPLES_DIR / f"{example['record']}{suffix}").read_bytes() == original


def test_the_record_reader_answers_the_leads_to_draw(api):
    response = api.post("/api/diagnosis/record/", {"files": files_payload(example_files())})
    assert response.status_code == 200, response.content
    record = response.json()
    assert record["fs_hz"] == 100.0 and record["n_samples"] == 1000
    assert len(record["leads"]) == 12
    files = {"two.csv": b"0.1\n"}
    refused = api.post("/api/diagnosis/record/", {"files": files_payload(files)})
    assert refused.status_code == 400


def test_the_record_reader_refuses_a_body_over_the_diagnosis_limit(api, settings):
    # it answers every sample as JSON: an upload-sized record would cost seconds and a
    # response ten times its size, and the page could not diagnose it anyway
    settings.PREDICT_MAX_BODY_BYTES = 10_000
    response = api.post("/api/diagnosis/record/", {"files": files_payload(example_files())})
    assert response.status_code == 413 and "10000-byte limit" in response.json()["detail"]


def test_a_content_length_that_is_not_a_number_is_named(api):
    # Django reads such a body as empty: without the check the answer blamed missing data
    diagnosis = post(api, {"metadata": {"age_years": 50}}, CONTENT_LENGTH="x")
    files = {"files": files_payload(example_files())}
    record = api.post("/api/diagnosis/record/", files, CONTENT_LENGTH="x")
    for response in (diagnosis, record):
        assert response.status_code == 400
        assert response.json()["detail"] == "Content-Length 'x' is not a number of bytes"


def test_the_page_needs_a_login_and_shows_the_examples(client, clinician):
    response = client.get("/diagnosis/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(clinician)
    page = client.get("/diagnosis/").content.decode()
    assert "Research software, not a medical device" in page
    assert 'href="/diagnosis/">12-lead</a>' in page
    for example in load_examples()["records"]:
        assert example["id"] in page
    for name in RAW_FEATURES:
        assert f'id="meta-{name}"' in page
        assert f'id="imputed-{name}"' in page  # where "imputed as ..." goes after a diagnosis
    # the test-fold size and the training data come from the served model's card, not from
    # the template, so weights trained on a full download describe themselves
    card = load_model("ptbxl-model02")[1]
    assert (
        f'<span id="n-test-records">{card["metrics"]["n_test_records"]}</span> records of '
        f"{card['metrics']['n_test_patients']} patients" in page
    )
    described = copy_summary(card["data"]["copy"])
    assert f'<span id="training-data">{described}</span>' in page
    # the features read without an "unknown" flag, as the served card says
    assert card["data"]["imputed_without_flag"] == ["sex_female", "pacemaker", "device_cs"]
    unflagged = '<span id="imputed-without-flag">sex, pacemaker and device</span> carry no'
    assert unflagged in page
    assert described.startswith(f"a {card['data']['copy']['records']}-record PTB-XL subset")


def test_a_blank_age_is_read_as_unknown_not_as_the_median_age(api):
    """The age has a missing flag: leaving it blank is not the same input as typing the
    training median, which is what the model read before the flag."""
    card = load_model("ptbxl-model01")[1]
    median = card["metadata_scaler"]["fill_values"]["age_years"]
    scaler = scaler_from_card(card)
    blank, typed = {"sex_female": 1}, {"sex_female": 1, "age_years": median}
    rows = [scaler.transform(metadata_row(metadata)[0])[0] for metadata in (blank, typed)]
    flag = FEATURE_COLUMNS.index("age_years_missing")
    assert rows[0][flag] == 1 and rows[1][flag] == 0
    answers = [post(api, {"metadata": metadata}).json() for metadata in (blank, typed)]
    assert answers[0]["imputed_values"]["age_years"] == median
    assert answers[0]["probabilities"] != answers[1]["probabilities"]


def test_a_blank_pacemaker_is_read_as_its_training_value_without_a_flag(api):
    """The page's default is a blank pacemaker: it must not reach the model as a doubtful
    note. Pacemaker has no flag (as sex and device), so a blank is the typed training value."""
    card = load_model("ptbxl-model01")[1]
    assert "pacemaker" in card["data"]["imputed_without_flag"]
    assert not any(column.startswith("pacemaker_") for column in card["input"]["metadata_features"])
    fill = card["metadata_scaler"]["fill_values"]["pacemaker"]
    blank = post(api, {"metadata": {"age_years": 60}}).json()
    typed = post(api, {"metadata": {"age_years": 60, "pacemaker": int(fill)}}).json()
    assert blank["imputed_values"]["pacemaker"] == fill == 0  # no pacemaker in training rows
    assert blank["probabilities"] == typed["probabilities"]
