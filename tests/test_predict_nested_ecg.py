"""``POST /predict`` with a nested "ecg" says it must be a flat list of numbers.

Before the fix ``{"ecg": [[1, 2], [3, 4]]}`` got '"ecg" has 2 samples; at least 1 s is needed',
which sent the caller looking for more data rather than a flat list.
"""

import json

import pytest

from monitoring.models import Prediction

pytestmark = pytest.mark.django_db

FLAT = '"ecg" must be a flat list of numbers (one lead in millivolts'


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


@pytest.mark.parametrize(
    ("ecg", "first"),
    [
        ([[1, 2], [3, 4]], '"ecg"[0] is [1, 2], not a number'),  # too short as well
        ([[0.1, 0.2]] * 600, '"ecg"[0] is [0.1, 0.2], not a number'),  # pairs, long enough
        ([0.1] * 10 + [{"mv": 1}], "\"ecg\"[10] is {'mv': 1}, not a number"),
    ],
    ids=["short-pairs", "long-pairs", "object-inside"],
)
def test_a_nested_ecg_is_refused_as_not_flat(api, ecg, first):
    response = api.post("/predict", json.dumps({"ecg": ecg}), content_type="application/json")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith(first)
    assert FLAT in detail
    assert "at least 1 s" not in detail
    assert not Prediction.objects.exists()
