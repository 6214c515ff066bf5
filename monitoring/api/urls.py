from django.urls import path
from rest_framework.routers import DefaultRouter

from monitoring.api import views

router = DefaultRouter()
router.register("patients", views.PatientViewSet, basename="patient")
router.register("devices", views.DeviceViewSet, basename="device")
router.register("recordings", views.RecordingViewSet, basename="recording")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("device/v1/self/", views.DeviceSelfView.as_view(), name="api-device-self"),
    *router.urls,
]
