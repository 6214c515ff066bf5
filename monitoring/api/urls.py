from django.urls import path
from rest_framework.routers import DefaultRouter

from monitoring.api import analyzer, views
from monitoring.api.predict import PredictView

router = DefaultRouter()
router.register("patients", views.PatientViewSet, basename="patient")
router.register("devices", views.DeviceViewSet, basename="device")
router.register("recordings", views.RecordingViewSet, basename="recording")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("predict/", PredictView.as_view(), name="api-predict"),
    path("examples/", analyzer.ExampleListView.as_view(), name="api-examples"),
    path(
        "examples/<str:excerpt_id>/",
        analyzer.ExampleDetailView.as_view(),
        name="api-example-detail",
    ),
    path("synthetic/", analyzer.SyntheticView.as_view(), name="api-synthetic"),
    path("device/v1/self/", views.DeviceSelfView.as_view(), name="api-device-self"),
    *router.urls,
]
