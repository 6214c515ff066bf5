from django.urls import include, path
from rest_framework.routers import DefaultRouter

from monitoring.api import alarms, analyzer, device, patient_report, trend, uploads, views
from monitoring.api.predict import PredictView

router = DefaultRouter()
router.register("patients", views.PatientViewSet, basename="patient")
router.register("devices", views.DeviceViewSet, basename="device")
router.register("recordings", views.RecordingViewSet, basename="recording")
router.register("alarms", alarms.AlarmViewSet, basename="alarm")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("predict/", PredictView.as_view(), name="api-predict"),
    path("diagnosis/", include("monitoring.api.diagnosis")),  # 12-lead PTB-XL models
    path("examples/", analyzer.ExampleListView.as_view(), name="api-examples"),
    path(
        "examples/<str:excerpt_id>/",
        analyzer.ExampleDetailView.as_view(),
        name="api-example-detail",
    ),
    path("synthetic/", analyzer.SyntheticView.as_view(), name="api-synthetic"),
    path("device/v1/self/", views.DeviceSelfView.as_view(), name="api-device-self"),
    path("device/v1/chunks/", device.DeviceChunkView.as_view(), name="api-device-chunks"),
    path(
        "device/v1/recordings/open/",
        device.DeviceOpenView.as_view(),
        name="api-device-open",
    ),
    path(
        "device/v1/recordings/close/",
        device.DeviceCloseView.as_view(),
        name="api-device-close",
    ),
    path(
        "patients/<int:patient_id>/uploads/",
        uploads.PatientUploadView.as_view(),
        name="api-patient-upload",
    ),
    path(
        "recordings/<int:pk>/analysis/",
        uploads.RecordingAnalysisView.as_view(),
        name="api-recording-analysis",
    ),
    path(
        "recordings/<int:pk>/analyze/",
        uploads.RecordingAnalyzeView.as_view(),
        name="api-recording-analyze",
    ),
    path("patients/<int:patient_id>/hr-trend/", trend.HrTrendView.as_view(), name="api-hr-trend"),
    path(
        "patients/<int:patient_id>/report/",
        patient_report.PatientReportView.as_view(),
        name="api-patient-report",
    ),
    path(
        "recordings/<int:pk>/hr-trend/",
        trend.RecordingHrTrendView.as_view(),
        name="api-recording-hr-trend",
    ),
    path("recordings/<int:pk>/beats/", uploads.RecordingBeatsView.as_view(), name="api-beats"),
    path(
        "recordings/<int:pk>/beats/<int:number>/saliency/",
        uploads.BeatSaliencyView.as_view(),
        name="api-beat-saliency",
    ),
    path(
        "recordings/<int:pk>/results.csv",
        uploads.ResultsCsvView.as_view(),
        name="api-results-csv",
    ),
    path("recordings/<int:pk>/strip.png", uploads.StripPngView.as_view(), name="api-strip-png"),
    path("", include("monitoring.api.review")),  # full-disclosure review and exports
    *router.urls,
]
