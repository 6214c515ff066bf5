"""Signals for the analyzer page: shipped real excerpts and synthetic ECG on demand."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.examples import ATTRIBUTION, load_excerpts
from monitoring.api.serializers import error_responses

SYNTHETIC_KINDS = ("normal", "pvc", "pac", "afib", "vt", "pause", "brady", "tachy")


def excerpt_fields() -> dict:
    """An excerpt as inference/examples holds it, less its signal, as schema fields (new ones
    each time: ``inline_serializer`` takes the fields out of the dict it gets)."""
    return {
        "id": serializers.CharField(),
        "record": serializers.CharField(help_text="The MIT-BIH record."),
        "start_s": serializers.FloatField(help_text="Where the excerpt starts in the record."),
        "description": serializers.CharField(),
        "fs": serializers.FloatField(),
        "beats": serializers.ListField(
            child=serializers.IntegerField(), help_text="Reference beat samples."
        ),
        "beat_labels": serializers.ListField(
            child=serializers.CharField(), help_text="AAMI class of each beat."
        ),
        "rhythms": serializers.ListField(child=serializers.CharField()),
    }


class ExampleListView(APIView):
    @extend_schema(
        operation_id="api_examples_list",
        responses={
            200: inline_serializer(
                "ExampleList",
                {
                    "attribution": serializers.CharField(),
                    "excerpts": inline_serializer(
                        "ExampleSummary",
                        excerpt_fields() | {"n_samples": serializers.IntegerField()},
                        many=True,
                    ),
                },
            ),
            **error_responses(401),
        },
    )
    def get(self, request):
        """Real MIT-BIH excerpts shipped with CardioSpike (metadata; the signal is per item)."""
        items = [
            {key: value for key, value in excerpt.items() if key != "ecg"}
            | {"n_samples": len(excerpt["ecg"])}
            for excerpt in load_excerpts()
        ]
        return Response({"attribution": ATTRIBUTION, "excerpts": items})


class ExampleDetailView(APIView):
    @extend_schema(
        operation_id="api_examples_retrieve",
        responses={
            200: inline_serializer(
                "Example",
                excerpt_fields()
                | {
                    "ecg": serializers.ListField(
                        child=serializers.FloatField(), help_text="The signal, mV."
                    ),
                    "attribution": serializers.CharField(),
                },
            ),
            **error_responses(401, 404),
        },
    )
    def get(self, request, excerpt_id: str):
        """One shipped excerpt with its signal (mV) and reference beat labels."""
        for excerpt in load_excerpts():
            if excerpt["id"] == excerpt_id:
                return Response(excerpt | {"attribution": ATTRIBUTION})
        return Response({"detail": f"no excerpt {excerpt_id!r}"}, status=404)


class SyntheticView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", enum=SYNTHETIC_KINDS, default="normal"),
            OpenApiParameter("seed", int, default=0),
            OpenApiParameter("duration_s", float, default=2.0),
            OpenApiParameter("noise", enum=("none", "realistic"), default="realistic"),
        ],
        responses={
            200: inline_serializer(
                "SyntheticEcg",
                {
                    # a plain string: a ChoiceField would rename the alarms' KindEnum
                    "kind": serializers.CharField(help_text="The kind asked for."),
                    "seed": serializers.IntegerField(),
                    "fs": serializers.FloatField(),
                    "ecg": serializers.ListField(
                        child=serializers.FloatField(), help_text="The signal, mV."
                    ),
                    "beats": serializers.ListField(child=serializers.IntegerField()),
                    "beat_labels": serializers.ListField(child=serializers.CharField()),
                    "rhythms": serializers.ListField(
                        child=serializers.ListField(),
                        help_text="[start sample, end sample, rhythm] per rhythm.",
                    ),
                    "description": serializers.CharField(),
                },
            ),
            **error_responses(400, 401),
        },
    )
    def get(self, request):
        """A synthetic lead II ECG at 250 Hz with its beat labels (for demos and tests only)."""
        from inference.synthetic import NoiseConfig, generate_window

        kind = request.query_params.get("kind", "normal")
        if kind not in SYNTHETIC_KINDS:
            return Response(
                {"detail": f"kind must be one of {', '.join(SYNTHETIC_KINDS)}; got {kind!r}"},
                status=400,
            )
        noise_name = request.query_params.get("noise", "realistic")
        if noise_name not in ("none", "realistic"):
            return Response({"detail": "noise must be 'none' or 'realistic'"}, status=400)
        try:
            seed = int(request.query_params.get("seed", 0))
            duration_s = float(request.query_params.get("duration_s", 2.0))
        except ValueError:
            return Response({"detail": "seed must be an integer, duration_s a number"}, status=400)
        if not 2.0 <= duration_s <= 60.0 or not 0 <= seed < 2**31:
            return Response(
                {"detail": "duration_s must be 2-60 s and seed 0 to 2^31-1"}, status=400
            )
        noise = NoiseConfig.realistic() if noise_name == "realistic" else NoiseConfig.none()
        ecg = generate_window(kind, fs=250.0, duration_s=duration_s, seed=seed, noise=noise)
        return Response(
            {
                "kind": kind,
                "seed": seed,
                "fs": ecg.fs,
                "ecg": [round(float(v), 4) for v in ecg.signal_mv],
                "beats": ecg.beats.tolist(),
                "beat_labels": list(ecg.beat_labels),
                "rhythms": [list(rhythm) for rhythm in ecg.rhythms],
                "description": "Synthetic ECG (inference.synthetic): for demos, not real data.",
            }
        )
