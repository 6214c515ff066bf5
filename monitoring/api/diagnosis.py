"""12-lead diagnosis with patient metadata (issue 7): the PTB-XL models behind an endpoint.

``POST /api/diagnosis/`` answers the five PTB-XL diagnostic superclass probabilities (NORM,
MI, STTC, CD, HYP) from the best shipped model for what it was given:
``inference.ptbxl_models.predict`` picks the ECG + metadata model when a 12-lead record
comes with the request and the metadata-only model when none does. The record arrives as

- JSON ``{"leads": [[...], ... 12 lists], "fs_hz": 100, "lead_names": [...], "metadata": {}}``
  (leads x samples, millivolts, 10 s at 100-2000 Hz; ``lead_names`` optional, any order);
- multipart: a WFDB record (``files``: the ``.hea`` and its ``.dat``) with the metadata as
  form fields named as the features (``age_years=61``; empty means unknown);
- JSON ``{"recording_id": 5, "start_s": 0, "metadata": {}}``: 10 s of a stored 12-lead
  recording the user may see (clinicians: their assigned patients);
- or only ``{"metadata": {...}}``.

Every refusal is a 400 naming the problem (413 for an oversize body, 415 for a body that is
neither JSON nor multipart, 401 without credentials). docs/diagnosis.md has the user's
version. The examples (``/api/diagnosis/examples/``) are three PTB-XL test-fold records
shipped in inference/examples/ptbxl/. Research software, not a medical device.
"""

import json
import math
import reprlib
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings
from django.urls import path
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.datasets.ptbxl import LEADS, RAW_FEATURES, RECORD_S, SUPERCLASSES
from inference.ptbxl_models import DISPLAY_LEADS, MAX_FS_HZ, MIN_FS_HZ, load_model, predict
from monitoring.api.errors import JSONParser
from monitoring.api.limits import BodyLimitMixin
from monitoring.api.serializers import error_responses
from monitoring.models import Recording
from monitoring.uploads import UploadError, files_from_request, parse_upload

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "inference" / "examples" / "ptbxl"
JSON_KEYS = ("leads", "fs_hz", "lead_names", "metadata", "recording_id", "start_s")
# Multipart fields besides the files: the metadata features, and the page's CSRF token.
FORM_KEYS = (*RAW_FEATURES, "csrfmiddlewaretoken")
# Names or lengths a refusal lists before it says "and N more".
MAX_LISTED = 20


def error(message: str, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"detail": message}, status=code)


def finite_number(value: object) -> float | None:
    """A JSON number as a finite float; None for anything else: true and false, 1e999 (which
    JSON reads as infinity) and an integer beyond float range (whose ``float()`` and
    ``math.isfinite()`` raise ``OverflowError``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


# --- The bundled examples ---------------------------------------------------------------


@lru_cache(maxsize=1)
def load_examples() -> dict:
    """inference/examples/ptbxl/examples.json: attribution and one row per shipped record."""
    return json.loads((EXAMPLES_DIR / "examples.json").read_text(encoding="utf-8"))


def example_leads(example: dict) -> np.ndarray:
    """A shipped example's signal, (1000, 12) mV at 100 Hz in PTB-XL lead order."""
    import wfdb

    signal, fields = wfdb.rdsamp(str(EXAMPLES_DIR / example["record"]))
    assert tuple(name.upper() for name in fields["sig_name"]) == LEADS, fields["sig_name"]
    return signal


# --- Reading the record out of a request ------------------------------------------------


def _lead_key(name: object) -> str:
    """A lead name as PTB-XL spells it (``aVR`` -> ``AVR``); not a lead name -> itself."""
    return name.strip().upper() if isinstance(name, str) else repr(name)


def some(items: list, limit: int = MAX_LISTED) -> str:
    """The first ``limit`` items joined by commas, and how many more there are: a message
    about a request of 100,000 channels stays a line, not a copy of the request."""
    shown = ", ".join(map(str, items[:limit]))
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else shown


def order_leads(lead_names: list, what: str) -> list[int]:
    """Column of each of the 12 standard leads, in PTB-XL order, among ``lead_names``.

    Names compare case-insensitively (aVR, AVR, avr). Raises ``ValueError`` naming any lead
    that is missing or given twice; other channels (e.g. Frank leads) are left out.
    Linear in the number of names: a JSON body can name hundreds of thousands of channels.
    """
    keys = [_lead_key(name) for name in lead_names]
    counts = Counter(keys)
    named = list(zip(LEADS, DISPLAY_LEADS, strict=True))
    doubled = [display for key, display in named if counts[key] > 1]
    if doubled:
        raise ValueError(f"{what} gives lead {', '.join(doubled)} twice")
    missing = [display for key, display in named if not counts[key]]
    if missing:
        others = [str(name) for name, key in zip(lead_names, keys, strict=True) if key not in LEADS]
        unknown = f"; not lead names: {some(others)}" if others else ""
        raise ValueError(
            f"{what} lacks lead {', '.join(missing)}: a 12-lead record needs "
            f"{', '.join(DISPLAY_LEADS)}{unknown}"
        )
    column = {key: index for index, key in enumerate(keys) if key in LEADS}
    return [column[key] for key in LEADS]


def leads_from_json(leads: object, lead_names: object) -> tuple[np.ndarray, list[str]]:
    """JSON ``leads`` (12 lists, one per lead) as (n_samples, 12) mV in PTB-XL order."""
    if not isinstance(leads, list) or not leads or not all(isinstance(x, list) for x in leads):
        raise ValueError(
            '"leads" must be a list of 12 lists of numbers (leads x samples, millivolts), '
            f"got {reprlib.repr(leads)}"
        )
    if lead_names is None:
        if len(leads) != len(LEADS):
            hint = ""
            if len(leads) > len(LEADS) and {len(lead) for lead in leads} == {len(LEADS)}:
                hint = " (it looks like samples x leads: send one list per lead)"
            raise ValueError(
                f'"leads" holds {len(leads)} leads; a 12-lead record needs 12, in the order '
                f'{", ".join(DISPLAY_LEADS)} (or name them in "lead_names"){hint}'
            )
        names = list(DISPLAY_LEADS)
    else:
        if not isinstance(lead_names, list) or len(lead_names) != len(leads):
            raise ValueError(
                f'"lead_names" must be a list with one name per lead ({len(leads)}), '
                f"got {reprlib.repr(lead_names)}"
            )
        names = [str(name) for name in lead_names]
    columns = order_leads(lead_names if lead_names is not None else names, '"lead_names"')
    lengths = {len(lead) for lead in leads}
    if len(lengths) != 1:
        # each list's length while they are few; beyond, the lengths there are
        per_list = [len(lead) for lead in leads]
        if len(per_list) <= MAX_LISTED:
            shown = some(per_list)
        else:
            shown = f"{len(per_list)} lists of {some(sorted(lengths))}"
        raise ValueError(
            f"the leads differ in length ({shown} samples): every lead must cover the same 10 s"
        )
    for column in columns:
        lead = leads[column]
        if {type(value) for value in lead} <= {int, float}:
            continue  # plain numbers; finiteness is checked on the array below
        for index, value in enumerate(lead):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(
                    f"lead {names[column]} sample {index} is {reprlib.repr(value)}, not a number"
                )
    try:
        signal = np.array([leads[column] for column in columns], dtype=np.float64).T
    except OverflowError:
        raise ValueError("a lead holds an integer too large to be a voltage") from None
    finite = np.isfinite(signal)
    if not finite.all():
        sample, lead = np.unravel_index(int(np.argmin(finite)), signal.shape)
        raise ValueError(
            f"lead {DISPLAY_LEADS[lead]} sample {sample} is {signal[sample, lead]}; "
            "values must be finite millivolts"
        )
    return signal, [names[column] for column in columns]


def leads_from_upload(files: list[tuple[str, bytes]]) -> tuple[np.ndarray, float, dict]:
    """A WFDB upload as (n_samples, 12) mV in PTB-XL order, its rate and a description."""
    if not any(name.lower().endswith(".hea") for name, _ in files):
        raise ValueError("upload a WFDB record: its .hea header with the .dat file it names")
    try:
        parsed = parse_upload(files)
    except UploadError as exc:
        raise ValueError(str(exc)) from None
    columns = order_leads(parsed.lead_names, f"record {parsed.source_name}")
    millivolts = (parsed.adc[:, columns].astype(np.float64) - parsed.baseline_adc) / (
        parsed.gain_adc_per_mv
    )
    return (
        millivolts,
        parsed.fs_hz,
        {
            "source": "wfdb",
            "name": parsed.source_name,
            "lead_names": [parsed.lead_names[column] for column in columns],
            "ignored_channels": [
                name for i, name in enumerate(parsed.lead_names) if i not in columns
            ],
        },
    )


def leads_from_recording(user, recording_id: object, start_s: object) -> tuple:
    """10 s of a stored recording the user may see, as (n_samples, 12) mV in PTB-XL order."""
    if isinstance(recording_id, bool) or not isinstance(recording_id, int):
        raise ValueError(f'"recording_id" must be an integer, got {reprlib.repr(recording_id)}')
    number = 0.0 if start_s is None else finite_number(start_s)
    if number is None or number < 0:
        raise ValueError(f'"start_s" must be a number of seconds >= 0, got {reprlib.repr(start_s)}')
    start_s = number
    recording = Recording.objects.visible_to(user).filter(pk=recording_id).first()
    if recording is None:  # someone else's patient reads as absent, not as forbidden
        raise LookupError(f"no recording {recording_id} that you can see")
    from monitoring.recordings import channels_mv

    columns = order_leads(list(recording.lead_names), f"recording {recording_id}")
    fs_hz = float(recording.sampling_rate_hz)
    duration_s = recording.end_sample / fs_hz
    past_end = (
        f'recording {recording_id} lasts {duration_s:.2f} s; 10 s from "start_s" '
        f"{start_s:g} s run past its end"
    )
    # before start_s * fs_hz: a start of 1e308 s is finite, but that product is not
    if start_s > duration_s:
        raise ValueError(past_end)
    start = round(start_s * fs_hz)
    end = start + round(RECORD_S * fs_hz)
    if end > recording.end_sample:
        raise ValueError(past_end)
    signal = channels_mv(recording, start, end, columns)
    if np.isnan(signal).any():
        raise ValueError(
            f"recording {recording_id} has a gap between {start_s:g} s and "
            f"{start_s + RECORD_S:g} s; choose another start_s"
        )
    description = {
        "source": "recording",
        "recording_id": recording.pk,
        "name": recording.source_name,
        "start_s": start_s,
        "lead_names": [recording.lead_names[column] for column in columns],
    }
    return signal, fs_hz, description


def metadata_from_form(form) -> dict:
    """Metadata features from multipart form fields: numbers, empty for unknown; the heart
    axis may also be a PTB-XL code (LAD, RAD, ...)."""
    metadata = {}
    for name in RAW_FEATURES:
        text = form.get(name, "")
        text = text.strip() if isinstance(text, str) else text
        if text in ("", None):
            continue
        try:
            metadata[name] = float(text)
        except (TypeError, ValueError):
            if name != "heart_axis":
                raise ValueError(f"metadata {name} must be a number, got {text!r}") from None
            metadata[name] = text  # predict checks the code
    return metadata


# --- The endpoint -----------------------------------------------------------------------

RESPONSE = inline_serializer(
    "DiagnosisResponse",
    {
        "probabilities": serializers.DictField(child=serializers.FloatField()),
        "thresholds": serializers.DictField(child=serializers.FloatField()),
        "positive": serializers.ListField(child=serializers.ChoiceField(SUPERCLASSES)),
        "model": serializers.DictField(),
        "mode": serializers.ChoiceField(["ecg+metadata", "metadata-only"]),
        "imputed": serializers.ListField(child=serializers.CharField()),
        "imputed_values": serializers.DictField(child=serializers.FloatField()),
        "metadata": serializers.DictField(),
        "record": serializers.DictField(allow_null=True),
        "processing_ms": serializers.FloatField(),
        "disclaimer": serializers.CharField(),
    },
)


class PredictBodyLimit(BodyLimitMixin):
    """``PREDICT_MAX_BODY_BYTES``, judged on the Content-Length before the body is read, also
    for a signed-in browser, whose CSRF check would parse it (``monitoring.api.limits``)."""

    def body_limit_bytes(self) -> int:
        return settings.PREDICT_MAX_BODY_BYTES

    def oversize_detail(self, declared_bytes: int, limit_bytes: int) -> str:
        return (
            f"body of {declared_bytes} bytes exceeds the {limit_bytes}-byte limit (a 10 s "
            "12-lead record at 500 Hz is about 0.45 MB as JSON, 0.12 MB as WFDB)"
        )


class DiagnosisView(PredictBodyLimit, APIView):
    """Five PTB-XL superclass probabilities from a 12-lead record and/or patient metadata."""

    # JSON or a file upload; anything else (form-encoded, text) is 415
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        request={
            "application/json": inline_serializer(
                "Diagnosis",  # "DiagnosisRequest" in the schema
                {
                    "leads": serializers.ListField(
                        child=serializers.ListField(child=serializers.FloatField()),
                        required=False,
                        help_text="12 lists (leads x samples), millivolts, 10 s",
                    ),
                    "fs_hz": serializers.FloatField(required=False),
                    "lead_names": serializers.ListField(
                        child=serializers.CharField(), required=False
                    ),
                    "metadata": serializers.DictField(required=False),
                    "recording_id": serializers.IntegerField(required=False),
                    "start_s": serializers.FloatField(required=False),
                },
            ),
            "multipart/form-data": inline_serializer(
                "DiagnosisUpload",
                {
                    # without files, the metadata alone is diagnosed
                    "files": serializers.ListField(
                        child=serializers.FileField(),
                        required=False,
                        help_text="A WFDB record: its .hea and the .dat it names.",
                    ),
                    **{
                        name: serializers.CharField(required=False, allow_blank=True)
                        for name in RAW_FEATURES
                    },
                },
            ),
        },
        responses={200: RESPONSE, **error_responses(400, 401, 403, 404, 413, 415)},
        examples=[
            OpenApiExample(
                "metadata only",
                value={"metadata": {"age_years": 61, "sex_female": 1, "weight_kg": 70}},
                request_only=True,
            )
        ],
    )
    def post(self, request):
        started = time.perf_counter()
        try:
            data = request.data  # unsupported content types raise 415 here
        except ParseError as exc:
            return error(f"malformed request body: {exc.detail}")
        try:
            if request.content_type.startswith("multipart/"):
                leads_mv, fs_hz, metadata, record = self._from_multipart(request, data)
            else:
                leads_mv, fs_hz, metadata, record = self._from_json(request, data)
            result = predict(leads_mv, fs_hz, metadata)
        except UploadError as exc:  # the files' size (413)
            return error(str(exc), exc.status)
        except LookupError as exc:
            return error(str(exc), status.HTTP_404_NOT_FOUND)
        except ValueError as exc:
            return error(str(exc))
        _, card = load_model(result["model"])
        return Response(
            {
                "probabilities": result["probabilities"],
                "thresholds": result["thresholds"],
                "positive": result["positive"],
                "model": {
                    "name": result["model"],
                    "version": card["version"],
                    "mode": result["mode"],
                    "description": card["description"],
                    "card": f"docs/models/{result['model']}.md",
                },
                "mode": result["mode"],
                "imputed": result["imputed"],
                # what the model read for each blank feature (training median; axis normal)
                "imputed_values": result["imputed_values"],
                "metadata": {
                    name: value for name, value in (metadata or {}).items() if value is not None
                },
                "record": record,
                "processing_ms": round(1000 * (time.perf_counter() - started), 3),
                "disclaimer": settings.RESEARCH_DISCLAIMER,
            }
        )

    def _from_json(self, request, data) -> tuple:
        if not isinstance(data, dict):
            raise ValueError('the body must be a JSON object like {"leads": [...], "fs_hz": 100}')
        unknown = sorted(set(data) - set(JSON_KEYS))
        if unknown:
            raise ValueError(f"unknown field {some(unknown)}; expected {', '.join(JSON_KEYS)}")
        metadata = data.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError(f'"metadata" must be an object, got {reprlib.repr(metadata)}')
        if data.get("recording_id") is not None:
            if data.get("leads") is not None:
                raise ValueError('give "leads" or "recording_id", not both')
            # the stored recording has its own rate and lead names: these would be ignored
            for key in ("fs_hz", "lead_names"):
                if data.get(key) is not None:
                    raise ValueError(
                        f'"{key}" was given with "recording_id": a stored recording is read '
                        "with its own rate and lead names"
                    )
            leads_mv, fs_hz, record = leads_from_recording(
                request.user, data["recording_id"], data.get("start_s")
            )
            return leads_mv, fs_hz, metadata, record
        if data.get("leads") is None:
            for key in ("fs_hz", "lead_names", "start_s"):
                if data.get(key) is not None:
                    raise ValueError(f'"{key}" was given without "leads"')
            return None, None, metadata, None
        if data.get("start_s") is not None:
            # the leads are the 10 s to read; a start within them would be ignored
            raise ValueError('"start_s" was given with "leads"; it applies to "recording_id" only')
        fs_hz = data.get("fs_hz")
        if fs_hz is None:
            raise ValueError(
                f'"fs_hz" is missing: the leads\' sampling rate in Hz ({MIN_FS_HZ:g}-{MAX_FS_HZ:g})'
            )
        if isinstance(fs_hz, bool) or not isinstance(fs_hz, int | float):
            raise ValueError(f'"fs_hz" must be a number of Hz, got {reprlib.repr(fs_hz)}')
        number = finite_number(fs_hz)
        if number is None:  # 1e999 or 10**400
            raise ValueError(
                f'"fs_hz" {reprlib.repr(fs_hz)} is outside {MIN_FS_HZ:g}-{MAX_FS_HZ:g} Hz'
            )
        leads_mv, names = leads_from_json(data["leads"], data.get("lead_names"))
        record = {"source": "json", "lead_names": names}
        return leads_mv, number, metadata, record

    def _from_multipart(self, request, data) -> tuple:
        unknown = sorted(set(data) - set(FORM_KEYS) - {"files", "file"})
        if unknown:
            raise ValueError(
                f"unknown form field {', '.join(unknown)}; the metadata fields are "
                f"{', '.join(RAW_FEATURES)} and the record goes in files"
            )
        metadata = metadata_from_form(data)
        files = files_from_request(request, limit=settings.PREDICT_MAX_BODY_BYTES)
        if not files:
            return None, None, metadata, None
        leads_mv, fs_hz, record = leads_from_upload(files)
        return leads_mv, fs_hz, metadata, record


def example_fields() -> dict:
    """A shipped example's row in inference/examples/ptbxl/examples.json, as schema fields
    (new ones each time: ``inline_serializer`` takes the fields out of the dict it gets)."""
    return {
        "id": serializers.CharField(),
        "ecg_id": serializers.IntegerField(help_text="The record's ecg_id in PTB-XL."),
        "record": serializers.CharField(),
        "fs_hz": serializers.FloatField(),
        "strat_fold": serializers.IntegerField(),
        "description": serializers.CharField(),
        # plain strings: the same choices as the answer's "positive" would make a second enum
        "superclasses": serializers.ListField(
            child=serializers.CharField(),
            help_text=f"Reference labels among {', '.join(SUPERCLASSES)}.",
        ),
        "scp_codes": serializers.DictField(child=serializers.FloatField()),
        "database_row": serializers.DictField(child=serializers.CharField()),
        "metadata": serializers.DictField(help_text="The features, null where unknown."),
    }


class ExampleListView(APIView):
    @extend_schema(
        operation_id="api_diagnosis_examples_list",
        responses={
            200: inline_serializer(
                "DiagnosisExampleList",
                {
                    "attribution": serializers.CharField(),
                    "licence": serializers.CharField(),
                    "records": inline_serializer("DiagnosisExample", example_fields(), many=True),
                },
            ),
            **error_responses(401),
        },
    )
    def get(self, request):
        """The shipped PTB-XL test-fold examples: reference labels and metadata rows."""
        examples = load_examples()
        return Response(
            {
                "attribution": examples["attribution"],
                "licence": examples["licence"],
                "records": examples["records"],
            }
        )


def leads_field() -> serializers.ListField:
    """The leads of a record, for drawing: leads x samples, mV, PTB-XL order."""
    return serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="Leads x samples, mV, in the order of lead_names.",
    )


class ExampleDetailView(APIView):
    @extend_schema(
        operation_id="api_diagnosis_examples_retrieve",
        responses={
            200: inline_serializer(
                "DiagnosisExampleLeads",
                example_fields()
                | {
                    "attribution": serializers.CharField(),
                    "lead_names": serializers.ListField(child=serializers.CharField()),
                    "leads": leads_field(),
                },
            ),
            **error_responses(401, 404),
        },
    )
    def get(self, request, example_id: str):
        """One shipped example with its leads (leads x samples, mV, 100 Hz, PTB-XL order)."""
        examples = load_examples()
        for example in examples["records"]:
            if example["id"] == example_id:
                signal = example_leads(example)
                return Response(
                    example
                    | {
                        "attribution": examples["attribution"],
                        "lead_names": list(DISPLAY_LEADS),
                        "leads": [[round(float(v), 4) for v in lead] for lead in signal.T],
                    }
                )
        return error(f"no example {example_id!r}", status.HTTP_404_NOT_FOUND)


class RecordReadView(PredictBodyLimit, APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "DiagnosisRecordUpload",
                {"files": serializers.ListField(child=serializers.FileField())},
            )
        },
        responses={
            200: inline_serializer(
                "DiagnosisRecordLeads",
                {
                    "source": serializers.CharField(),
                    "name": serializers.CharField(help_text="The record's name."),
                    "lead_names": serializers.ListField(child=serializers.CharField()),
                    "ignored_channels": serializers.ListField(
                        child=serializers.CharField(), help_text="Channels that are not leads."
                    ),
                    "fs_hz": serializers.FloatField(),
                    "n_samples": serializers.IntegerField(),
                    "leads": leads_field(),
                },
            ),
            **error_responses(400, 401, 403, 413, 415),
        },
    )
    def post(self, request):
        """Read a 12-lead WFDB upload (.hea + .dat) and answer its leads for drawing:
        leads x samples in mV at the record's rate, PTB-XL order. Nothing is stored. The
        diagnosis's body limit applies: the page only draws what it can then diagnose."""
        try:
            files = files_from_request(request, limit=settings.PREDICT_MAX_BODY_BYTES)
            leads_mv, fs_hz, record = leads_from_upload(files)
        except UploadError as exc:
            return error(str(exc), exc.status)
        except ValueError as exc:
            return error(str(exc))
        return Response(
            record
            | {
                "fs_hz": fs_hz,
                "n_samples": int(leads_mv.shape[0]),
                "leads": [[round(float(v), 4) for v in lead] for lead in leads_mv.T],
            }
        )


urlpatterns = [
    path("", DiagnosisView.as_view(), name="api-diagnosis"),
    path("examples/", ExampleListView.as_view(), name="api-diagnosis-examples"),
    path(
        "examples/<str:example_id>/",
        ExampleDetailView.as_view(),
        name="api-diagnosis-example",
    ),
    path("record/", RecordReadView.as_view(), name="api-diagnosis-record"),
]
