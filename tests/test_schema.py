import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db


def test_it_generates_a_valid_openapi_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)  # raises on anything OpenAPI 3 does not allow
    assert schema["openapi"].startswith("3.")
    for path in ["/api/patients/", "/api/recordings/{id}/summary/", "/api/device/v1/self/"]:
        assert path in schema["paths"], path


def test_it_serves_the_schema_to_logged_in_users_only(client, clinician):
    assert client.get("/api/schema/?format=json").status_code == 401
    client.force_login(clinician)
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    validate_schema(response.json())


def test_it_serves_the_docs_page_from_local_assets(client, clinician):
    assert client.get("/docs/api/").status_code == 302  # to the login page
    client.force_login(clinician)
    page = client.get("/docs/api/").content.decode()
    assert "swagger-ui" in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn." not in page and "unpkg" not in page
    asset = page.split('src="')[1].split('"')[0]
    assert client.get(asset).status_code == 200
