"""Signals for the analyzer page: shipped real excerpts and synthetic ECG on demand."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.examples import ATTRIBUTION, load_excerpts

SYNTHETIC_KINDS = ("normal", "pvc", "pac", "afib", "vt", "pause", "brady", "tachy")


class ExampleListView(APIView):
    def get(self, request):
        """Real MIT-BIH excerpts shipped with CardioSpike (metadata; the signal is per item)."""
        items = [
            {key: value for key, value in excerpt.items() if key != "ecg"}
            | {"n_samples": len(excerpt["ecg"])}
            for excerpt in load_excerpts()
        ]
        return Response({"attribution": ATTRIBUTION, "excerpts": items})


class ExampleDetailView(APIView):
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
        ]
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
