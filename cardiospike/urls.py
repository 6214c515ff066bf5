from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseServerError, JsonResponse
from django.template.loader import render_to_string
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from monitoring import (
    alarm_history,
    dashboard_views,
    diagnosis_views,
    patient_report,
    upload_views,
    views,
)
from monitoring.api.predict import PredictView
from monitoring.context_processors import site
from monitoring.forms import LoginForm
from monitoring.review import review_page

admin.site.site_header = "CardioSpike administration"
admin.site.site_title = "CardioSpike admin"


def server_error(request):
    """500.html with the site's name and research notice.

    Django's own handler renders 500.html with no context at all, so that a failing context
    processor or database cannot break the error page; the site context processor reads
    settings only, so it is as safe to call here.
    """
    return HttpResponseServerError(render_to_string("500.html", site(request)))


def not_found(request, exception):
    """404 for a URL no view answers: JSON ``{"detail": "Not found."}`` under /api/, the
    shape every API refusal has (DRF's own 404, for an object, says the same), and the
    404.html page elsewhere."""
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
handler500 = server_error

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/", views.health),
    path(
        "login/",
        auth_views.LoginView.as_view(
            authentication_form=LoginForm, redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.home, name="home"),
    # Page names differ from the API router's ("patient-detail", "recording-detail"): with the
    # same name, {% url %} would send browsers to the JSON API.
    path("patients/<int:pk>/", views.patient_detail, name="patient-page"),
    path("patients/<int:pk>/upload/", upload_views.upload_recording, name="patient-upload"),
    path("patients/<int:pk>/alarms/", alarm_history.alarm_history, name="patient-alarms"),
    path("patients/<int:pk>/report/", patient_report.handover_report, name="patient-report"),
    path("recordings/<int:pk>/", upload_views.recording_detail, name="recording-results"),
    path(
        "recordings/<int:pk>/analyze/",
        upload_views.reanalyze_recording,
        name="recording-reanalyze",
    ),
    path("recordings/<int:pk>/review/", review_page, name="recording-review"),
    path("analyzer/", views.analyzer, name="analyzer"),
    path("diagnosis/", diagnosis_views.diagnosis, name="diagnosis"),  # 12-lead, PTB-XL models
    # The dashboard (issue 6): central station, live view, staff management.
    path("station/", dashboard_views.station, name="station"),
    path("patients/<int:pk>/live/", dashboard_views.patient_live, name="patient-live"),
    path("manage/", dashboard_views.manage, name="manage"),
    path("manage/patients/admit/", dashboard_views.admit_patient, name="patient-admit"),
    path("manage/patients/<int:pk>/limits/", dashboard_views.edit_limits, name="patient-limits"),
    path(
        "manage/patients/<int:pk>/care-team/",
        dashboard_views.edit_care_team,
        name="patient-care-team",
    ),
    path(
        "manage/patients/<int:pk>/discharge/",
        dashboard_views.discharge_patient,
        name="patient-discharge",
    ),
    path(
        "manage/patients/<int:pk>/readmit/",
        dashboard_views.readmit_patient,
        name="patient-readmit",
    ),
    path("manage/patients/<int:pk>/device/", dashboard_views.assign_device, name="patient-device"),
    path(
        "manage/devices/<int:pk>/unassign/",
        dashboard_views.unassign_device,
        name="device-unassign",
    ),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # DRF marks its views login-exempt; this page is for browsers, so it redirects to login.
    # The split view serves Swagger UI's start-up script from the same address (?script), as
    # a file rather than inline in the page, which script-src 'self' would block; the script
    # holds the CSRF token, so it stays behind the login too.
    path(
        "docs/api/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("api/", include("monitoring.api.urls")),
    # The seed's address; the same view is /api/predict/ for API clients.
    path("predict", PredictView.as_view(), name="predict"),
]
