from unittest.mock import ANY

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
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


@pytest.mark.parametrize("query", ["", "?format=json", "?format=yaml"])
def test_an_anonymous_schema_request_gets_the_json_401_of_every_refusal(client, query):
    # it was rendered as the schema is, YAML by default: "detail:\n  string: ...\n  code: ..."
    response = client.get(f"/api/schema/{query}", HTTP_ACCEPT="*/*")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_the_schema_itself_keeps_its_formats(client, clinician):
    client.force_login(clinician)
    assert client.get("/api/schema/")["Content-Type"].startswith("application/vnd.oai.openapi")
    as_json = client.get("/api/schema/?format=json")
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert as_json.json()["openapi"].startswith("3.")


def test_it_serves_the_docs_page_from_local_assets(client, clinician):
    assert client.get("/docs/api/").status_code == 302  # to the login page
    client.force_login(clinician)
    page = client.get("/docs/api/").content.decode()
    assert "swagger-ui" in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn." not in page and "unpkg" not in page
    asset = page.split('src="')[1].split('"')[0]
    assert client.get(asset).status_code == 200


# --- What the schema says about each operation -----------------------------------------


@pytest.fixture(scope="module")
def generated():
    """The schema, with the warnings and errors drf-spectacular emitted making it."""
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    return schema, dict(GENERATOR_STATS._warn_cache), dict(GENERATOR_STATS._error_cache)


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_it_generates_the_schema_without_warnings_or_errors(generated):
    # the analyzer's and the diagnosis's example views had "unable to guess serializer"
    # (no response body in the docs), their list and item views shared an operationId, and
    # the device token had no security scheme
    _, warnings, errors = generated
    assert not warnings and not errors, "\n".join([*warnings, *errors])


def test_every_api_operation_lists_its_errors_with_the_detail_body(generated):
    schema, _, _ = generated
    error_refs = {"#/components/schemas/Error", "#/components/schemas/DeviceError"}
    assert schema["components"]["schemas"]["Error"]["properties"] == {
        "detail": {"type": "string", "description": ANY}
    }
    for path, method, operation in operations(schema):
        codes = {code for code in operation["responses"] if not code.startswith("2")}
        assert "401" in codes, (path, method)
        for code in codes:
            body = operation["responses"][code]["content"]["application/json"]["schema"]
            assert body["$ref"] in error_refs, (path, method, code)


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/predict", "post", {"200", "400", "401", "403", "413", "415", "429"}),
        ("/api/predict/", "post", {"200", "400", "401", "403", "413", "415", "429"}),
        ("/api/diagnosis/", "post", {"200", "400", "401", "403", "404", "413", "415"}),
        (
            "/api/patients/{patient_id}/uploads/",
            "post",
            {"201", "400", "401", "403", "404", "413", "415"},
        ),
        ("/api/alarms/", "get", {"200", "400", "401"}),
        ("/api/alarms/{id}/acknowledge/", "post", {"200", "401", "403", "404"}),
        ("/api/patients/{patient_id}/hr-trend/", "get", {"200", "400", "401", "404"}),
        ("/api/recordings/{id}/strip.png", "get", {"200", "400", "401", "404", "409"}),
        ("/api/recordings/{id}/events/", "get", {"200", "400", "401", "404"}),
        ("/api/patients/", "get", {"200", "400", "401"}),
        ("/api/patients/{id}/", "get", {"200", "401", "404"}),
    ],
)
def test_an_operation_lists_the_statuses_it_answers(generated, path, method, codes):
    schema, _, _ = generated
    assert set(schema["paths"][path][method]["responses"]) == codes


@pytest.mark.parametrize(
    ("path", "method", "operation_id", "fields"),
    [
        ("/api/examples/", "get", "api_examples_list", {"attribution", "excerpts"}),
        ("/api/examples/{excerpt_id}/", "get", "api_examples_retrieve", {"ecg", "beats"}),
        ("/api/synthetic/", "get", "api_synthetic_retrieve", {"kind", "ecg", "beat_labels"}),
        ("/api/diagnosis/examples/", "get", "api_diagnosis_examples_list", {"records"}),
        (
            "/api/diagnosis/examples/{example_id}/",
            "get",
            "api_diagnosis_examples_retrieve",
            {"leads", "metadata"},
        ),
        ("/api/diagnosis/record/", "post", "api_diagnosis_record_create", {"leads", "fs_hz"}),
    ],
)
def test_the_example_views_have_a_response_body_and_their_own_names(
    generated, path, method, operation_id, fields
):
    # they showed "No response body", and the list and item views were *_retrieve and
    # *_retrieve_2
    schema, _, _ = generated
    operation = schema["paths"][path][method]
    assert operation["operationId"] == operation_id
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    component = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert fields <= set(component["properties"])


def test_operation_ids_are_unique(generated):
    schema, _, _ = generated
    ids = [operation["operationId"] for _, _, operation in operations(schema)]
    assert len(ids) == len(set(ids))


def test_the_predict_body_names_fs_hz_and_its_alias(generated):
    schema, _, _ = generated
    fields = schema["components"]["schemas"]["PredictRequest"]["properties"]
    assert {"ecg", "fs_hz", "fs", "model", "store", "explain"} == set(fields)
    assert "fs_hz" in fields["fs"]["description"]


@pytest.mark.parametrize(
    ("component", "files_required"),
    [
        ("DiagnosisUploadRequest", False),  # the metadata alone may be sent as a form
        ("DiagnosisRecordUploadRequest", True),
        ("RecordingUploadRequest", True),
    ],
)
def test_uploaded_files_are_documented_as_binary(generated, component, files_required):
    # they were "string, format: uri", what a response would give: Swagger UI offered a text
    # box for a URL instead of a file picker
    schema, _, _ = generated
    body = schema["components"]["schemas"][component]
    assert body["properties"]["files"]["items"] == {"type": "string", "format": "binary"}
    assert ("files" in body.get("required", [])) == files_required


def test_the_events_parameters_say_exactly_one_of_after_s_and_before_s_is_needed(generated):
    # both are optional to OpenAPI, but the endpoint needs exactly one: the schema did not say
    schema, _, _ = generated
    parameters = schema["paths"]["/api/recordings/{id}/events/"]["get"]["parameters"]
    by_name = {parameter["name"]: parameter for parameter in parameters}
    for name in ("after_s", "before_s"):
        assert not by_name[name].get("required")
        assert "exactly one of after_s and before_s" in by_name[name]["description"]


def test_every_paged_list_says_a_bad_page_is_a_400(generated):
    # a limit or offset that is not a whole number is a 400; the lists but /api/alarms/ did
    # not say so, and their limit and offset had DRF's descriptions, without the bounds
    schema, _, _ = generated
    paged = 0
    for path, method, operation in operations(schema):
        by_name = {parameter["name"]: parameter for parameter in operation.get("parameters", [])}
        if "offset" not in by_name:
            continue
        paged += 1
        assert "400" in operation["responses"], (path, method)
        assert by_name["limit"]["schema"] == {"type": "integer", "minimum": 1}, path
        assert by_name["offset"]["schema"] == {"type": "integer", "minimum": 0}, path
        assert "1000" in by_name["limit"]["description"], path  # the cap
    assert paged == 5  # patients, devices, recordings, alarms, a recording's beats


@pytest.mark.parametrize(
    ("component", "field"), [("Alarm", "acknowledged_by"), ("Analysis", "uploaded_by")]
)
def test_a_username_that_may_be_missing_is_nullable(generated, component, field):
    # both are null (not yet acknowledged, uploader unknown) but the schema said "string"
    schema, _, _ = generated
    assert schema["components"]["schemas"][component]["properties"][field]["nullable"] is True


def test_recordings_can_be_listed_by_patient(generated):
    schema, _, _ = generated
    parameters = schema["paths"]["/api/recordings/"]["get"]["parameters"]
    assert {"name": "patient", "schema": {"type": "integer"}}.items() <= next(
        parameter for parameter in parameters if parameter["name"] == "patient"
    ).items()
