"""The analyzer page and the signals it loads: shipped excerpts and synthetic strips."""

import pytest

from inference.examples import EXCERPTS, load_excerpts

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def test_it_renders_the_analyzer_with_models_excerpts_and_kinds(api):
    page = api.get("/analyzer/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Research software, not a medical device" in html
    assert 'value="window-cnn-mitdb" selected' in html
    assert 'value="window-cnn-synthetic"' in html
    assert 'option value="pvc"' in html
    assert "mitdb-119-0s" in html and "ODC Attribution" in html
    assert "csrftoken" in page.cookies  # the page POSTs to /predict


def test_it_lists_and_serves_the_shipped_excerpts(api):
    listing = api.get("/api/examples/").json()
    assert "MIT-BIH" in listing["attribution"]
    assert [item["record"] for item in listing["excerpts"]] == [r for r, _, _ in EXCERPTS]
    assert all("ecg" not in item and item["n_samples"] == 2500 for item in listing["excerpts"])
    excerpt = api.get("/api/examples/mitdb-119-0s/").json()
    assert excerpt["fs"] == 250.0 and len(excerpt["ecg"]) == 2500
    assert "V" in excerpt["beat_labels"]  # record 119 is in ventricular bigeminy here
    assert api.get("/api/examples/nope/").status_code == 404


def test_it_ships_excerpts_that_match_the_reference_annotations():
    by_id = {excerpt["id"]: excerpt for excerpt in load_excerpts()}
    assert "(AFIB" in by_id["mitdb-201-30s"]["rhythms"]
    assert set(by_id["mitdb-100-60s"]["beat_labels"]) == {"N"}


def test_it_generates_synthetic_strips_on_request(api):
    body = api.get("/api/synthetic/", {"kind": "pvc", "seed": 3}).json()
    assert body["fs"] == 250.0 and len(body["ecg"]) == 500
    assert "V" in body["beat_labels"]
    again = api.get("/api/synthetic/", {"kind": "pvc", "seed": 3}).json()
    assert again["ecg"] == body["ecg"]  # same seed, same strip
    longer = api.get("/api/synthetic/", {"kind": "afib", "duration_s": 10}).json()
    assert len(longer["ecg"]) == 2500


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "flutter"}, "kind must be one of normal"),
        ({"seed": "abc"}, "seed must be an integer"),
        ({"duration_s": 600}, "duration_s must be 2-60 s"),
        ({"noise": "loud"}, "noise must be"),
    ],
)
def test_it_refuses_bad_synthetic_requests(api, params, message):
    response = api.get("/api/synthetic/", params)
    assert response.status_code == 400 and message in response.json()["detail"]


def test_it_explains_each_window_with_a_deterministic_saliency_map(api):
    ecg = api.get("/api/examples/mitdb-119-0s/").json()["ecg"][:1000]
    first = api.post(
        "/predict", {"ecg": ecg, "explain": True}, content_type="application/json"
    ).json()
    second = api.post(
        "/predict", {"ecg": ecg, "explain": True}, content_type="application/json"
    ).json()
    maps = [window["saliency"] for window in first["windows"]]
    assert len(maps) == 2 and all(len(m) == 500 for m in maps)
    assert all(max(m) == 1.0 and min(m) >= 0.0 for m in maps)
    assert maps == [window["saliency"] for window in second["windows"]]
    plain = api.post("/predict", {"ecg": ecg}, content_type="application/json").json()
    assert "saliency" not in plain["windows"][0]


def test_it_limits_explanations_to_a_minute(api, settings):
    settings.PREDICT_MAX_EXPLAIN_S = 2
    response = api.post(
        "/predict", {"ecg": [0.0] * 750, "explain": True}, content_type="application/json"
    )
    assert response.status_code == 400 and "limited to 2 s" in response.json()["detail"]
