import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Page, Paginator
from django.db import DatabaseError
from django.db.models import Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from inference.examples import ATTRIBUTION, load_excerpts
from inference.predictor import DEFAULT_MODEL, available_models
from monitoring import live
from monitoring.admissions import by_bed
from monitoring.api.analyzer import SYNTHETIC_KINDS
from monitoring.forms import audit_field_label
from monitoring.health import cached_public_report, run_checks
from monitoring.models import Patient

logger = logging.getLogger(__name__)


@login_not_required
@never_cache
@require_GET
def health(request):
    """Public: 200 when every configured part answers, 503 naming the ones that do not. The
    errors and service addresses are shown to staff and logged, not shown to anyone.

    The alarm path (the periodic alarm check's heartbeat, late or failed notifications) makes
    the status ``degraded`` and names it under ``degraded``, still with 200: a load balancer
    keeps a server that can serve, as every other server would see the same rows; a monitor
    reads the status. Anyone sees which check is degraded, staff its figures.

    Staff get a fresh report on every call. The public answer is reused for
    ``PUBLIC_REPORT_MAX_AGE_S`` (a second): a flood of anonymous calls runs the checks once a
    second, not once a call (docs/architecture.md, "Services and health")."""
    try:
        staff = request.user.is_staff
    except DatabaseError:  # the session's user is read from the database that is down
        staff = False
    if staff:
        report = full = run_checks()
    else:
        report, full = cached_public_report()
    if full is not None and (full["failing"] or full["degraded"]):
        names = full["failing"] + full["degraded"]
        logger.warning("health: %s %s", full["status"], {n: full["checks"][n] for n in names})
    return JsonResponse(report, status=503 if report["status"] == "error" else 200)


def csrf_failure(request, reason=""):
    """A refused form (CSRF check failed) in the site's layout, with its research notice:
    Django's own page is bare (``CSRF_FAILURE_VIEW``). ``reason`` is not shown (the
    middleware logs it)."""
    return render(request, "403_csrf.html", status=403)


# Discharged patients listed a page at a time (home and /manage/): a ward discharges
# thousands in a few years, and both pages must stay fast and readable.
DISCHARGED_PER_PAGE = 50


def discharged_page(request, patients) -> dict:
    """The discharged among ``patients``: searched by MRN or name (``?q=``), most recently
    changed (discharged) first, ``DISCHARGED_PER_PAGE`` a page (``?page=``; a page number out
    of range gives the last page). The template context for ``_discharged_search.html``."""
    query = request.GET.get("q", "").strip()[:100]
    discharged = patients.filter(is_active=False)
    if query:
        discharged = discharged.filter(Q(mrn__icontains=query) | Q(name__icontains=query))
    paginator = Paginator(discharged.order_by("-updated_at", "-pk"), DISCHARGED_PER_PAGE)
    page: Page = paginator.get_page(request.GET.get("page"))
    return {"discharged": page, "query": query}


def home(request):
    """The dashboard home: the admitted patients assigned to the clinician (staff: everyone),
    and the discharged ones a page at a time."""
    patients = Patient.objects.visible_to(request.user).prefetch_related("devices")
    # by ward and bed, numbers as numbers (by_bed), as the station orders them
    admitted = by_bed(patients.filter(is_active=True))
    context = {"patients": admitted, **discharged_page(request, patients)}
    return render(request, "monitoring/home.html", context)


def patient_detail(request, pk: int):
    # 404, not 403, for a patient the clinician is not assigned to: whether a patient
    # exists is itself protected information.
    patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=pk)
    recordings = patient.recordings.select_related("device")[:50]
    audit_entries = list(patient.audit_entries.select_related("user")[:50])  # newest first
    for entry in audit_entries:
        # the setting as staff know it ("HR high limit (bpm)"), not its stored field name
        entry.label = audit_field_label(entry.field)
    return render(
        request,
        "monitoring/patient_detail.html",
        {
            "patient": patient,
            "devices": live.with_battery(patient.devices.all()),
            "recordings": recordings,
            "audit_entries": audit_entries,
        },
    )


@ensure_csrf_cookie  # the page POSTs to /predict with the CSRF token from this cookie
def analyzer(request):
    """The seed's two panels: a signal to load, generate or upload; the model's verdict."""
    models = available_models()
    return render(
        request,
        "monitoring/analyzer.html",
        {
            "synthetic_kinds": SYNTHETIC_KINDS,
            "excerpts": [
                {key: excerpt[key] for key in ("id", "record", "start_s", "description")}
                for excerpt in load_excerpts()
            ],
            "attribution": ATTRIBUTION,
            "models": models,
            "default_model": DEFAULT_MODEL if DEFAULT_MODEL in models else None,
            # /predict explains (saliency) only this much signal; the page asks for it only
            # then, so that a longer signal is still analysed
            "max_explain_s": settings.PREDICT_MAX_EXPLAIN_S,
        },
    )
