"""The API's refusals share one shape, ``{"detail": "..."}``: unknown URLs under /api/ too."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    ["/api/nope/", "/api/recordings/1/nope/", "/api/patients/x/hr-trend/", "/api/device/v2/"],
)
def test_an_unknown_api_url_answers_json_404(client, clinician, path):
    # it was the HTML 404 page: a script reading the body as JSON failed on it
    for logged_in in (False, True):
        if logged_in:
            client.force_login(clinician)
        response = client.get(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": "Not found."}


def test_an_unknown_api_url_answers_json_404_to_any_method(client, clinician):
    client.force_login(clinician)
    response = client.post("/api/nope/", "{}", content_type="application/json")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_a_missing_object_answers_the_same_shape(client, clinician):
    client.force_login(clinician)
    response = client.get("/api/patients/999999/")
    assert response.status_code == 404 and list(response.json()) == ["detail"]


@pytest.mark.parametrize("path", ["/nope/", "/apinope/", "/patients/999999/"])
def test_other_unknown_urls_keep_the_html_404_page(client, clinician, path):
    client.force_login(clinician)
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.content.decode()
