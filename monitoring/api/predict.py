"""``POST /predict``: the seed's request format, answered by the shipped window models.

Request (JSON)::

    {"ecg": [500 numbers, mV], "fs_hz": 250, "model": "window-cnn-mitdb", "store": false}

``fs_hz`` (Hz, default 250; ``fs``, the seed's name, is an alias), ``model`` (default: the
real-data model), ``store`` (save a ``Prediction`` row) and ``explain`` (a saliency map per
window) are optional. Any other key is refused with a 400 naming it, as ``/api/diagnosis/``
does: a misspelt rate would otherwise be ignored and the signal read at 250 Hz. Signals
of 1 s up to ``PREDICT_MAX_SAMPLES`` samples are cut into 2-second windows. The answer keeps
the seed's fields (``prediction`` "Normal"/"Arrhythmia", ``normal_prob``,
``arrhythmia_prob``) so existing clients keep working, and adds the per-window verdicts.

The signal must look like a lead in millivolts, by the limits the 12-lead diagnosis puts on
its leads (``inference.ptbxl_models``): an amplitude of an ECG in millivolts
(``inference.signal.ecg_amplitude_problem``, as uploads check it: volts and microvolts are
refused naming the likely unit), no value beyond ``MAX_ECG_ABS_MV`` (100 mV), and not flat
(a range under ``MIN_LEAD_RANGE_MV``, 0.01 mV: a missing or disconnected lead). The window
model scales each window to 0..1, so without these a flat line was judged "Normal", a signal
in volts was classified as if it were an ECG, and values near the float limit overflowed into
NaN. ``ecg`` must be a flat list of numbers: a nested list (``[[1, 2], [3, 4]]``, several
leads or [time, value] pairs) is refused with a 400 that says so, whatever its length. Only
JSON bodies are parsed: anything else gets 415.
"""

import math
import reprlib

import numpy as np
from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from inference.predictor import get_predictor
from inference.ptbxl_models import MIN_LEAD_RANGE_MV
from inference.signal import MAX_ECG_ABS_MV, ecg_amplitude_problem, first_beyond_ecg_range
from monitoring.api.errors import JSONParser
from monitoring.api.limits import BodyLimitMixin
from monitoring.api.serializers import error_responses
from monitoring.models import Prediction

MIN_FS_HZ = 50.0
MAX_FS_HZ = 2000.0
SEED_LABELS = {"normal": "Normal", "arrhythmia": "Arrhythmia"}
# What a request may hold; "fs" is the seed's name for "fs_hz", the name /api/diagnosis/ uses.
JSON_KEYS = ("ecg", "fs_hz", "fs", "model", "store", "explain")


class PredictAnonThrottle(AnonRateThrottle):
    """Per-IP limit for callers without an account, when anonymous use is switched on."""

    scope = "predict_anon"

    def get_rate(self) -> str:
        return settings.PREDICT_ANON_RATE


def error(message: str, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"detail": message}, status=code)


def parse_ecg(data) -> tuple[np.ndarray, float]:
    """The signal and its sampling rate from a request body, or ``ValueError`` saying why not."""
    if not isinstance(data, dict):
        raise ValueError('the body must be a JSON object like {"ecg": [...]}')
    unknown = sorted(set(data) - set(JSON_KEYS))
    if unknown:
        raise ValueError(
            f"unknown field {', '.join(reprlib.repr(key) for key in unknown[:5])}"
            f"{' and more' if len(unknown) > 5 else ''}; expected {', '.join(JSON_KEYS)}"
        )
    if "ecg" not in data:
        raise ValueError('missing "ecg": a list of numbers (millivolts)')
    ecg = data["ecg"]
    if not isinstance(ecg, list):
        raise ValueError(f'"ecg" must be a list of numbers, got {type(ecg).__name__}')
    # A nested list (several leads, or [time, value] pairs) is refused first, for what it is:
    # checked after the length, [[1, 2], [3, 4]] was told it "has 2 samples; at least 1 s
    # is needed", which sent the caller looking for more data rather than a flat list.
    nested = next((i for i, value in enumerate(ecg) if isinstance(value, list | dict)), None)
    if nested is not None:
        raise ValueError(
            f'"ecg"[{nested}] is {reprlib.repr(ecg[nested])}, not a number: "ecg" must be a '
            "flat list of numbers (one lead in millivolts, e.g. [0.12, 0.15, ...])"
        )
    if "fs_hz" in data and "fs" in data and data["fs_hz"] != data["fs"]:
        raise ValueError(
            f'"fs_hz" ({reprlib.repr(data["fs_hz"])}) and its alias "fs" '
            f"({reprlib.repr(data['fs'])}) differ: give one of them"
        )
    name = "fs_hz" if "fs_hz" in data else "fs"  # errors use the name the caller gave
    fs = data.get(name, 250)
    if isinstance(fs, bool) or not isinstance(fs, int | float):
        raise ValueError(f'"{name}" must be a number of Hz, got {reprlib.repr(fs)}')
    if not MIN_FS_HZ <= fs <= MAX_FS_HZ:
        raise ValueError(
            f'"{name}" must be between {MIN_FS_HZ:g} and {MAX_FS_HZ:g} Hz, got {reprlib.repr(fs)}'
        )
    minimum = math.ceil(fs)  # one second
    if len(ecg) < minimum:
        raise ValueError(
            f'"ecg" has {len(ecg)} samples; at least 1 s is needed ({minimum} samples at {fs:g} Hz)'
        )
    if len(ecg) > settings.PREDICT_MAX_SAMPLES:
        raise ValueError(
            f'"ecg" has {len(ecg)} samples; the maximum is {settings.PREDICT_MAX_SAMPLES}'
        )
    if {type(value) for value in ecg} <= {int, float}:
        # the common case, checked at C speed: plain numbers, only finiteness left to check
        try:
            values = np.asarray(ecg, dtype=np.float64)
        except OverflowError:  # an integer beyond float range
            values = None
        if values is not None and np.all(np.isfinite(values)):
            return values, float(fs)
    for index, value in enumerate(ecg):  # find the first bad value, to name it
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f'"ecg"[{index}] is {reprlib.repr(value)}, not a number')
        try:
            finite = math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise ValueError(f'"ecg"[{index}] is {reprlib.repr(value)}; values must be finite')
    raise AssertionError("unreachable: a list that failed the fast check has a bad value")


def check_lead(ecg: np.ndarray) -> None:
    """``ValueError`` unless ``ecg`` could be one lead in millivolts with a signal on it.

    The 12-lead diagnosis's lead checks (``inference.ptbxl_models.prepare_leads``), with its
    limits and wording, for the one lead given here: an amplitude that says volts or
    microvolts is refused naming the unit (a flat lead passes that check); values beyond
    ``MAX_ECG_ABS_MV`` are not millivolts (the first is named; values near the float limit
    would also overflow the 0..1 scaling into NaN); a range under ``MIN_LEAD_RANGE_MV`` is a
    flat lead, which the model would call "Normal".
    """
    problem = ecg_amplitude_problem(ecg, '"ecg"')
    if problem is not None:
        raise ValueError(f'{problem}; "ecg" must be in millivolts')
    index = first_beyond_ecg_range(ecg)
    if index is not None:
        raise ValueError(
            f'"ecg" reaches {ecg[index]:g} ("ecg"[{index}]); it must be in millivolts '
            f"(at most {MAX_ECG_ABS_MV:g} mV)"
        )
    span = float(np.ptp(ecg))
    if span < MIN_LEAD_RANGE_MV:
        raise ValueError(
            f'"ecg" is flat (missing or disconnected): its values span {span:g} mV, '
            f"less than {MIN_LEAD_RANGE_MV:g} mV"
        )


class PredictView(BodyLimitMixin, APIView):
    """Classify a single-lead ECG (lead II) in 2-second windows: normal or arrhythmia.

    A body over ``PREDICT_MAX_BODY_BYTES`` gets 413 by its Content-Length before it is read
    (``BodyLimitMixin``), also for a signed-in browser, whose CSRF check would parse it."""

    # JSON only: a form's "ecg" can only be a string, never the list of numbers asked for
    parser_classes = [JSONParser]

    def body_limit_bytes(self) -> int:
        return settings.PREDICT_MAX_BODY_BYTES

    def get_permissions(self):
        if settings.PREDICT_ALLOW_ANONYMOUS:
            return [AllowAny()]
        return [IsAuthenticated()]

    def get_throttles(self):
        if settings.PREDICT_ALLOW_ANONYMOUS and not self.request.user.is_authenticated:
            return [PredictAnonThrottle()]
        return []

    @extend_schema(
        request=inline_serializer(
            "Predict",  # "PredictRequest" in the schema: request components get "Request"
            {
                "ecg": serializers.ListField(child=serializers.FloatField()),
                "fs_hz": serializers.FloatField(
                    required=False,
                    default=250,
                    help_text=f"Sampling rate (Hz), {MIN_FS_HZ:g}-{MAX_FS_HZ:g}.",
                ),
                "fs": serializers.FloatField(
                    required=False,
                    help_text='The seed\'s name for "fs_hz": either may be given (both only '
                    "if equal).",
                ),
                "model": serializers.CharField(required=False),
                "store": serializers.BooleanField(required=False, default=False),
                "explain": serializers.BooleanField(required=False, default=False),
            },
        ),
        responses={
            200: inline_serializer(
                "PredictResponse",
                {
                    "prediction": serializers.ChoiceField(["Normal", "Arrhythmia"]),
                    "normal_prob": serializers.FloatField(),
                    "arrhythmia_prob": serializers.FloatField(),
                    "label": serializers.CharField(),
                    "probabilities": serializers.DictField(child=serializers.FloatField()),
                    "windows": serializers.ListField(child=serializers.DictField()),
                    "model": serializers.DictField(child=serializers.CharField()),
                    "n_samples": serializers.IntegerField(),
                    "fs": serializers.FloatField(),
                    "processing_ms": serializers.FloatField(),
                    "prediction_id": serializers.IntegerField(allow_null=True),
                },
            ),
            **error_responses(400, 401, 403, 413, 415, 429),
        },
        examples=[OpenApiExample("seed format", value={"ecg": [0.0] * 500})],
    )
    def post(self, request):
        try:
            data = request.data
        except ParseError as exc:
            return error(f"malformed JSON: {exc.detail}")
        try:
            ecg, fs = parse_ecg(data)
        except ValueError as exc:
            return error(str(exc))
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            return error('"model" must be the name of a model, e.g. "window-cnn-mitdb"')
        try:
            predictor = get_predictor(model or None)
        except LookupError as exc:
            return error(str(exc))
        for flag in ("store", "explain"):
            # "yes" or 1 would otherwise be read as false, silently
            if flag in data and not isinstance(data[flag], bool):
                return error(f'"{flag}" must be true or false, got {reprlib.repr(data[flag])}')
        explain = data.get("explain") is True
        if explain and len(ecg) > settings.PREDICT_MAX_EXPLAIN_S * fs:
            return error(
                f'"explain" is limited to {settings.PREDICT_MAX_EXPLAIN_S} s of signal; '
                f"this one lasts {len(ecg) / fs:.0f} s"
            )
        try:
            check_lead(ecg)
        except ValueError as exc:
            return error(str(exc))
        result = predictor.predict(ecg, fs, explain=explain)
        probabilities = result["probabilities"]
        prediction_id = None
        if data.get("store") is True:
            prediction = Prediction.objects.create(
                requested_by=request.user if request.user.is_authenticated else None,
                model_name=predictor.name,
                model_version=predictor.version,
                window_length=len(ecg),
                label=result["label"],
                probabilities=probabilities,
            )
            prediction_id = prediction.pk
        return Response(
            {
                "prediction": SEED_LABELS[result["label"]],
                "normal_prob": probabilities["normal"],
                "arrhythmia_prob": probabilities["arrhythmia"],
                "label": result["label"],
                "probabilities": probabilities,
                "windows": [
                    {key: value for key, value in vars(window).items() if value is not None}
                    for window in result["windows"]
                ],
                "model": result["model"],
                "n_samples": len(ecg),
                "fs": fs,
                "processing_ms": round(result["processing_ms"], 3),
                "prediction_id": prediction_id,
            }
        )
