"""POST /predict: the seed's request format, the answer, and every kind of bad input."""

import json

import numpy as np
import pytest
from django.core.cache import cache

from inference.predictor import get_predictor
from monitoring.models import ApiToken, Prediction

pytestmark = pytest.mark.django_db


def ecg_window(n_samples: int = 500, fs: float = 250.0) -> list[float]:
    """A plausible 2-s lead II strip: narrow R waves at 75 bpm on a flat baseline."""
    t = np.arange(n_samples) / fs
    signal = np.zeros(n_samples)
    for beat_s in np.arange(0.3, t[-1], 0.8):
        signal += 1.2 * np.exp(-(((t - beat_s) / 0.012) ** 2))
        signal += 0.25 * np.exp(-(((t - beat_s - 0.3) / 0.05) ** 2))
    return [round(float(v), 5) for v in signal]


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def post(client, body, **extra):
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/predict", payload, content_type="application/json", **extra)


def test_it_answers_the_seed_request_format(api):
    response = post(api, {"ecg": ecg_window()})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["prediction"] in ("Normal", "Arrhythmia")
    assert body["normal_prob"] + body["arrhythmia_prob"] == pytest.approx(1.0, abs=1e-6)
    expected = "Arrhythmia" if body["arrhythmia_prob"] > body["normal_prob"] else "Normal"
    assert body["prediction"] == expected
    assert body["label"] == expected.lower()
    assert body["model"]["name"] == get_predictor().name
    assert body["n_samples"] == 500 and body["fs"] == 250.0
    assert len(body["windows"]) == 1 and body["processing_ms"] > 0
    assert body["prediction_id"] is None


def test_it_matches_the_predictor_called_directly(api):
    signal = ecg_window()
    body = post(api, {"ecg": signal}).json()
    direct = get_predictor().predict(np.asarray(signal), 250.0)
    assert body["arrhythmia_prob"] == pytest.approx(direct["probabilities"]["arrhythmia"])


def test_it_resamples_and_judges_long_signals_window_by_window(api):
    signal = ecg_window(n_samples=360 * 5, fs=360.0)  # 5 s at 360 Hz
    body = post(api, {"ecg": signal, "fs": 360}).json()
    windows = body["windows"]
    # two full 2-s windows and the last second, padded into a third
    assert [(w["start_s"], w["end_s"]) for w in windows] == [(0, 2), (2, 4), (4, 5)]
    worst = max(w["probabilities"]["arrhythmia"] for w in windows)
    assert body["arrhythmia_prob"] == pytest.approx(worst)


def test_it_takes_the_rate_as_fs_hz_as_the_diagnosis_does(api):
    # "fs_hz" was an unknown key, silently ignored: 5 s at 500 Hz was read as 10 s at 250 Hz
    signal = ecg_window(n_samples=500 * 5, fs=500.0)
    body = post(api, {"ecg": signal, "fs_hz": 500}).json()
    assert body["fs"] == 500
    assert [(w["start_s"], w["end_s"]) for w in body["windows"]] == [(0, 2), (2, 4), (4, 5)]
    same = post(api, {"ecg": signal, "fs": 500, "fs_hz": 500.0})
    assert same.status_code == 200 and same.json()["windows"] == body["windows"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"signal": [0.1] * 500, "fs_hz": 500}, "unknown field 'signal'; expected ecg, fs_hz"),
        ({"ecg": [0.1] * 500, "rate": 500, "Fs": 1}, "unknown field 'Fs', 'rate'; expected"),
        ({"ecg": [0.1] * 500, "fs": 250, "fs_hz": 500}, '"fs_hz" (500) and its alias "fs" (250)'),
        ({"ecg": [0.1] * 500, "fs_hz": 30}, '"fs_hz" must be between 50 and 2000 Hz, got 30'),
        ({"ecg": [0.1] * 500, "fs_hz": "500"}, "\"fs_hz\" must be a number of Hz, got '500'"),
    ],
)
def test_it_refuses_unknown_keys_and_conflicting_rates(api, body, message):
    response = post(api, body)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_a_long_unknown_key_is_not_echoed_whole(api):
    response = post(api, {"ecg": ecg_window(), "x" * 10_000: 1})
    assert response.status_code == 400
    assert len(response.json()["detail"]) < 200


def test_it_serves_the_synthetic_model_on_request(api):
    body = post(api, {"ecg": ecg_window(), "model": "window-cnn-synthetic"}).json()
    assert body["model"]["name"] == "window-cnn-synthetic"


@pytest.mark.parametrize("name", ["beat-cnn-mitdb", "beat-rows-kaggle187", "rhythm-vf"])
def test_it_refuses_a_model_that_is_not_a_window_model(api, name):
    # beat and rhythm models sit in the same weights folder but take other inputs
    response = post(api, {"ecg": ecg_window(), "model": name})
    assert response.status_code == 400
    assert "window-cnn-mitdb" in response.json()["detail"]


def test_it_stores_the_prediction_when_asked(api, clinician):
    body = post(api, {"ecg": ecg_window(), "store": True}).json()
    stored = Prediction.objects.get(pk=body["prediction_id"])
    assert stored.requested_by == clinician
    assert stored.label == body["label"]
    assert stored.probabilities["arrhythmia"] == pytest.approx(body["arrhythmia_prob"])
    assert stored.recording is None and stored.window_length == 500


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, 'missing "ecg"'),
        ({"ecg": "1,2,3"}, '"ecg" must be a list'),
        ({"ecg": {"0": 1}}, '"ecg" must be a list'),
        ({"ecg": [0.1] * 299 + ["x"]}, "\"ecg\"[299] is 'x', not a number"),
        ({"ecg": [0.1] * 299 + [None]}, '"ecg"[299] is None'),
        ({"ecg": [0.1] * 299 + [True]}, '"ecg"[299] is True'),
        ({"ecg": [0.1] * 299 + [[1]]}, "not a number"),
        ({"ecg": [0.1] * 249}, "at least 1 s is needed (250 samples"),
        ({"ecg": [0.1] * 99, "fs": 100}, "at least 1 s is needed (100 samples"),
        ({"ecg": [0.1] * 500, "fs": 30}, '"fs" must be between 50 and 2000 Hz'),
        ({"ecg": [0.1] * 5000, "fs": 5000}, '"fs" must be between 50 and 2000 Hz'),
        ({"ecg": [0.1] * 500, "fs": "250"}, '"fs" must be a number'),
        ({"ecg": [0.1] * 500, "model": "nope"}, "unknown model 'nope'; available:"),
        ({"ecg": [0.1] * 500, "model": ["window-cnn-mitdb"]}, '"model" must be the name'),
        ({"ecg": [0.1] * 299 + [[0.1] * 10000]}, "..."),  # a huge value is not echoed whole
        ([0.1] * 500, "must be a JSON object"),
    ],
)
def test_it_refuses_bad_input_with_a_message(api, body, message):
    response = post(api, body)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Prediction.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        '{"ecg": [1, 2',  # truncated
        '{"ecg": [NaN, 1]}',  # NaN is not JSON
        '{"ecg": [Infinity]}',
    ],
)
def test_it_refuses_malformed_json(api, raw):
    response = post(api, raw)
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["detail"]


def test_it_refuses_json_nested_too_deeply_with_a_400(api):
    # 2.2 kB of brackets: Python's decoder raised RecursionError, which DRF's parser let
    # through as a 500 (an HTML page)
    response = post(api, "[" * 1100 + "]" * 1100)
    assert response.status_code == 400
    assert response.json() == {"detail": "malformed JSON: JSON nested too deeply"}


def test_it_refuses_values_that_overflow_to_infinity(api):
    raw = '{"ecg": [' + ", ".join(["0.1"] * 300) + ", 1e400]}"
    response = post(api, raw)
    assert response.status_code == 400
    assert '"ecg"[300] is inf; values must be finite' in response.json()["detail"]


def test_it_refuses_a_sampling_rate_beyond_float_range(api):
    response = post(api, '{"ecg": [0.1, 0.2], "fs": 1' + "0" * 400 + "}")
    assert response.status_code == 400
    assert '"fs" must be between' in response.json()["detail"]


@pytest.mark.parametrize("rate", ["1e999", "-1e999", "1e308"])
def test_it_refuses_a_sampling_rate_json_reads_as_infinity_or_near_it(api, rate):
    # checked with /api/diagnosis/'s overflow bugs: a comparison, never float() or round()
    response = post(api, '{"ecg": [0.1, 0.2], "fs_hz": ' + rate + "}")
    assert response.status_code == 400
    assert '"fs_hz" must be between 50 and 2000 Hz' in response.json()["detail"]


def test_it_refuses_integers_beyond_float_range(api):
    raw = '{"ecg": [' + ", ".join(["1"] * 300) + ", 1" + "0" * 400 + "]}"
    response = post(api, raw)
    assert response.status_code == 400
    assert '"ecg"[300]' in response.json()["detail"] and "finite" in response.json()["detail"]


def test_it_refuses_more_samples_than_the_documented_maximum(api, settings):
    settings.PREDICT_MAX_SAMPLES = 1000
    response = post(api, {"ecg": [0.1] * 1001})
    assert response.status_code == 400
    assert "the maximum is 1000" in response.json()["detail"]


def test_it_answers_413_to_an_oversized_body(api, settings):
    settings.PREDICT_MAX_BODY_BYTES = 10_000
    response = post(api, {"ecg": [0.123456] * 5000})
    assert response.status_code == 413
    assert "exceeds the 10000-byte limit" in response.json()["detail"]


def test_it_answers_400_to_a_content_length_that_is_not_a_number(api):
    # it was int(header) unguarded: a 500
    response = post(api, {"ecg": ecg_window()}, CONTENT_LENGTH="12abc")
    assert response.status_code == 400
    assert response.json()["detail"] == "Content-Length '12abc' is not a number of bytes"


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        ("ecg=1,2,3", "text/plain"),
        # a form's "ecg" can only be a string: it was parsed, then refused with 400 "must be a
        # list of numbers", while the README promised 415 for any body that is not JSON
        ("ecg=1,2,3", "application/x-www-form-urlencoded"),
    ],
)
def test_it_answers_415_to_a_body_that_is_not_json(api, payload, content_type):
    response = api.post("/predict", payload, content_type=content_type)
    assert response.status_code == 415
    assert f'Unsupported media type "{content_type}"' in response.json()["detail"]


def test_it_answers_415_to_a_multipart_form(api):
    response = api.post("/predict", {"ecg": "1,2,3"})  # the test client's default: multipart
    assert response.status_code == 415


@pytest.mark.parametrize(
    "ecg",
    [[0] * 500, [0.0] * 500, [1.5] * 500, [-0.3] * 2500],
    ids=["zeros", "float-zeros", "constant", "long-constant"],
)
def test_it_refuses_a_flat_signal_as_the_diagnosis_refuses_a_flat_lead(api, ecg):
    # a flat line was judged "Normal" with normal_prob 0.98: the model scales it to 0..1
    response = post(api, {"ecg": ecg, "fs": 250, "store": True})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith('"ecg" is flat (missing or disconnected)')
    assert "less than 0.01 mV" in detail
    assert not Prediction.objects.exists()


def test_a_small_but_real_signal_is_not_flat(api):
    faint = [round(0.05 * value, 5) for value in ecg_window()]  # R waves of 0.06 mV
    assert post(api, {"ecg": faint}).status_code == 200


@pytest.mark.parametrize(
    ("ecg", "message"),
    [
        (
            [1e308] * 500,
            '"ecg" reaches 1e+308 ("ecg"[0]); it must be in millivolts (at most 100 mV)',
        ),
        ([-1e308] * 500, '"ecg" reaches -1e+308 ("ecg"[0])'),
        ([0.1] * 497 + [1e308, -1e308, 1e308], '"ecg" reaches 1e+308 ("ecg"[497])'),
        # half the samples far off: the amplitude names it first
        ([0.1] * 250 + [1e308, -1e308] * 125, "it looks like microvolts"),
        ([0.0] * 499 + [100.5], '"ecg" reaches 100.5 ("ecg"[499])'),
        ([0] * 400 + [1000] * 100, "must be in millivolts"),  # microvolts or ADC counts
    ],
    ids=["max-float", "min-float", "a-few-huge", "alternating", "just-over", "not-mv"],
)
def test_it_refuses_values_beyond_a_plausible_ecg_amplitude(api, ecg, message):
    # [1e308] * 500 was a 500: the 0..1 scaling overflowed into NaN inside the model
    response = post(api, {"ecg": ecg})
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_it_takes_values_up_to_the_limit(api):
    # R waves of 30 mV (nstdb 118e_6 reaches 30.6 mV, which the old 20 mV limit refused) and
    # an artefact of 99.5 mV: large, but in millivolts
    signal = [round(25.0 * value, 5) for value in ecg_window()]
    signal[100] = 99.5
    response = post(api, {"ecg": signal})
    assert response.status_code == 200, response.content
    assert np.isfinite(response.json()["arrhythmia_prob"])


@pytest.mark.parametrize(("scale", "unit"), [(1e-3, "volts"), (1e3, "microvolts")])
def test_it_refuses_a_signal_in_the_wrong_unit_naming_the_unit(api, scale, unit):
    # the old checks called this strip in volts "flat (missing or disconnected)", and in
    # microvolts said only "at most 20 mV"
    signal = [value * scale for value in ecg_window()]
    response = post(api, {"ecg": signal, "store": True})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith('"ecg"\'s amplitude (the 99th percentile of |x - median|) is ')
    assert f"it looks like {unit} (" in detail and " mV if so)" in detail
    assert detail.endswith('"ecg" must be in millivolts')
    assert not Prediction.objects.exists()


def test_a_signal_in_volts_with_a_large_artefact_is_refused_not_classified(api):
    # the record's largest excursion 0.05 (an electrode pop, in volts): over the flat check's
    # 0.01, so it used to be classified as if it were an ECG in millivolts
    signal = [value / 1000 for value in ecg_window()]
    signal[200] = 0.05
    response = post(api, {"ecg": signal})
    assert response.status_code == 400
    assert "it looks like volts" in response.json()["detail"]


def test_a_tiny_signal_is_called_volts_or_no_signal(api):
    # 5 uV of alternation (once "flat"): no ECG in millivolts; in volts it would be 5 mV
    response = post(api, {"ecg": [0.1, 0.105] * 250})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "it looks like volts (2.5 mV if so), or a lead that carries no signal" in detail


def test_it_requires_a_login_or_an_api_token(client, clinician):
    assert post(client, {"ecg": ecg_window()}).status_code == 401
    _, key = ApiToken.issue(clinician)
    response = post(client, {"ecg": ecg_window()}, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert client.get("/predict", HTTP_AUTHORIZATION=f"Token {key}").status_code == 405


def test_it_can_open_to_anonymous_callers_with_a_throttle(client, settings):
    settings.PREDICT_ALLOW_ANONYMOUS = True
    settings.PREDICT_ANON_RATE = "3/min"
    cache.clear()
    statuses = [post(client, {"ecg": ecg_window()}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    cache.clear()


def test_it_is_also_served_under_the_api_prefix(api):
    response = api.post("/api/predict/", {"ecg": ecg_window()}, content_type="application/json")
    assert response.status_code == 200


@pytest.mark.parametrize(("flag", "value"), [("store", "yes"), ("explain", 1), ("store", None)])
def test_it_refuses_a_flag_that_is_not_true_or_false(api, flag, value):
    response = post(api, {"ecg": ecg_window(), flag: value})
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f'"{flag}" must be true or false')
    assert not Prediction.objects.exists()


def test_a_bad_flag_is_echoed_short(api):
    response = post(api, {"ecg": ecg_window(), "store": list(range(10_000))})
    assert response.status_code == 400
    assert len(response.json()["detail"]) < 200  # not the whole list back
