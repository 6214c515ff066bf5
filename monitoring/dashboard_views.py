"""The clinicians' dashboard (issue 6): central station, single-patient live view, and the
staff's patient and device management with an audit trail (docs/dashboard.md).

The pages render what the database holds; the live parts come over the websockets of the live
data contract (``/ws/station/``, ``/ws/patients/<id>/``) in frontend/static/cardiospike/
station.js and live.js. Scoping is the usual ``visible_to``: a patient a clinician is not
assigned to answers 404 (whether it exists is itself protected); management pages answer 403 to
anyone but staff.
"""

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods

from monitoring import live
from monitoring.admissions import by_bed, end_monitoring, unassign
from monitoring.forms import (
    EMPTY_CARE_TEAM_MESSAGE,
    LIMIT_FIELDS,
    STALE_PATIENT_MESSAGE,
    AdmitPatientForm,
    AlarmLimitsForm,
    AssignDeviceForm,
    CareTeamForm,
    ReadmitForm,
    RecipientFormSet,
    audit_changes,
    audit_clinicians,
    audit_field_label,
    audit_recipients,
    check_bed_free,
    clinician_names,
    recipient_labels,
)
from monitoring.models import AuditEntry, Device, Patient
from monitoring.views import discharged_page

GAINS_MM_PER_MV = (5, 10, 20)


def staff_required(view):
    """403 for anyone but staff (login itself is the middleware's job: anonymous users are
    redirected to the login page before this runs)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Only staff manage patients and devices.")
        return view(request, *args, **kwargs)

    return wrapper


# --- Central station and live view ----------------------------------------------------------


def station(request):
    """Central station: a tile per admitted patient the user may see, grouped by ward.

    The tiles are rendered here so the page shows who is monitored before the websocket
    connects; station.js then fills in waveforms, heart rates, rhythms and alarm colours.
    """
    # by ward and bed with numbers compared as numbers (by_bed): the database's text order
    # put bed 101 before bed 2
    patients = by_bed(Patient.objects.visible_to(request.user).filter(is_active=True))
    # One query for every tile's alarm, not one a tile (the page's cost must not grow with the
    # station), chosen as the live status messages choose it, so the page and the socket
    # agree. A tile names no recording: station.js learns it from the "wave" messages.
    alarms = live.top_alarms([patient.pk for patient in patients])
    tiles = [{"patient": patient, "alarm": alarms[patient.pk]} for patient in patients]
    context = {"tiles": tiles, "battery_low_pct": settings.DEVICE_BATTERY_LOW_PCT}
    return render(request, "monitoring/station.html", context)


@ensure_csrf_cookie  # live.js acknowledges alarms with a POST that needs the CSRF cookie
def patient_live(request, pk: int):
    """Single-patient live view: ECG paper at 25 mm/s, beat labels, HR trend, alarms."""
    patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=pk)
    # what a reconnecting patient stream resends (monitoring/consumers.py), each row with its
    # ECG link as live.js writes the rows it adds (the "review_path" of live.alarm_payload)
    alarm_rows = [
        {"alarm": alarm, "review_path": live.alarm_payload(alarm)["review_path"]}
        for alarm in live.alarms_to_list(patient.pk)
    ]
    return render(
        request,
        "monitoring/patient_live.html",
        {
            "patient": patient,
            # the recording the socket's hello names when one is live (live.current_recording)
            "recording": live.live_recording(patient.pk),
            "alarm_rows": alarm_rows,
            "gains": GAINS_MM_PER_MV,
            # the alarm times are shown in the server's zone, as on the patient page, the
            # review and the alarm emails, and the page says which (live.js)
            "time_zone": timezone.get_current_timezone_name(),
        },
    )


# --- Management (staff only) ----------------------------------------------------------------


@staff_required
def manage(request):
    """Staff overview: the admitted patients, the discharged ones a page at a time, and every
    device with its holder."""
    return render(
        request,
        "monitoring/manage.html",
        {
            # the recipient counts in the patients' own query, so that the page's queries do
            # not grow with its rows (alarm_recipients.count and has_first_call_recipient in
            # the template were two queries a patient)
            # by ward and bed, numbers as numbers (by_bed), as the station orders them
            "patients": by_bed(
                Patient.objects.filter(is_active=True).annotate(
                    n_recipients=Count("alarm_recipients"),
                    n_first_call=Count(
                        "alarm_recipients", filter=Q(alarm_recipients__escalation=False)
                    ),
                )
            ),
            **discharged_page(request, Patient.objects.all()),
            "devices": live.with_battery(
                Device.objects.select_related("patient").order_by("serial")
            ),
        },
    )


def _recipients_warning(request, patient: Patient) -> None:
    if not patient.has_first_call_recipient:
        messages.warning(
            request,
            f"{patient.name} has no first-call alarm recipient: their alarms are emailed to "
            "nobody when raised. Add one under Alarm limits and recipients.",
        )


def _recipients_context(recipients) -> dict:
    return {"recipients": recipients, "escalation_s": settings.ALARM_ESCALATION_S}


@staff_required
def admit_patient(request):
    """Admit (create) a patient with its alarm recipients; the admission (``is_active``, ward,
    bed), the starting limits, every recipient and the care team go into the audit trail."""
    form = AdmitPatientForm(request.POST or None)
    # the form's own (unsaved) instance: once the form saves it, the recipients belong to it
    recipients = RecipientFormSet(request.POST or None, instance=form.instance, prefix="recipients")
    # all(): validate both, so that the page shows every error at once
    if request.method == "POST" and all([form.is_valid(), recipients.is_valid()]):
        with transaction.atomic():
            # the bed again, under its lock: another admission may have taken it since the
            # form was validated (the form then shows the same error as validation's)
            bed_free = check_bed_free(form, form.cleaned_data, lock=True)
            if bed_free:
                patient = form.save()
                recipients.save()
                # the admission itself as readmission audits it (is_active to True, and the
                # ward and bed when given: a blank one is no change), then the starting limits
                admitted = {"is_active": None, "ward": "", "bed": ""}
                audit_changes(request.user, patient, {**admitted, **dict.fromkeys(LIMIT_FIELDS)})
                audit_recipients(request.user, patient, {})
                audit_clinicians(request.user, patient, set())
        if bed_free:
            messages.success(request, f"Admitted {patient.name} ({patient.mrn}).")
            _recipients_warning(request, patient)
            return redirect("patient-page", pk=patient.pk)
    context = {"form": form, **_recipients_context(recipients)}
    return render(request, "monitoring/manage_admit.html", context)


@staff_required
def edit_limits(request, pk: int):
    """Set a patient's alarm limits and recipients; one AuditEntry per limit or recipient
    that changed."""
    patient = get_object_or_404(Patient, pk=pk)
    form = AlarmLimitsForm(request.POST or None, instance=patient)
    recipients = RecipientFormSet(request.POST or None, instance=patient, prefix="recipients")
    if request.method == "POST" and all([form.is_valid(), recipients.is_valid()]):
        with transaction.atomic():
            # Old values from a locked row, not from the form's instance: two staff saving at
            # once must each audit what they actually replaced.
            locked = Patient.objects.select_for_update().get(pk=pk)
            if not form.opened_on(locked):
                # The form sends every limit back, also those this user left alone: saved, it
                # would put back the values someone else changed since the page was opened.
                # The page is shown again as the patient is now.
                messages.error(request, STALE_PATIENT_MESSAGE)
                return redirect("patient-limits", pk=patient.pk)
            old = {field: getattr(locked, field) for field in LIMIT_FIELDS}
            before = recipient_labels(locked)
            # only the limits: the form's instance was read before the lock, and saving all
            # its fields could undo a discharge or ward change made meanwhile
            form.save(commit=False)
            form.instance.save(update_fields=[*LIMIT_FIELDS, "updated_at"])
            # the limits by the names the form shows them with, not the model's field names
            changed = [
                audit_field_label(field)
                for field in audit_changes(request.user, form.instance, old)
            ]
            recipients.save()
            changed += audit_recipients(request.user, patient, before)
        if changed:
            messages.success(request, f"Saved: {', '.join(changed)}.")
        else:
            messages.info(request, "Nothing changed.")
        _recipients_warning(request, patient)
        return redirect("patient-page", pk=patient.pk)
    context = {"patient": patient, "form": form, **_recipients_context(recipients)}
    return render(request, "monitoring/manage_limits.html", context)


@staff_required
def edit_care_team(request, pk: int):
    """Change a patient's care team: the clinicians who see their data and alarms (staff see
    every patient). One AuditEntry per clinician added or removed.

    Discharged patients too: their clinicians go on reviewing their recordings, and a team
    changed before a readmission is the one that sees them again. Emptying the team is asked
    for (``CareTeamForm``) and warned of once saved."""
    patient = get_object_or_404(Patient, pk=pk)
    form = CareTeamForm(request.POST or None, instance=patient)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            # The team as it is, from under the patient's row lock, as the limits page reads
            # the limits: two staff saving at once each audit what they actually replaced.
            locked = Patient.objects.select_for_update().get(pk=pk)
            if not form.opened_on(locked):
                # the page sends the whole team back: saved, it would undo a change someone
                # else made since it was opened (the page is shown again as the team is now)
                messages.error(request, STALE_PATIENT_MESSAGE)
                return redirect("patient-care-team", pk=pk)
            before = clinician_names(locked)
            locked.clinicians.set(form.cleaned_data["clinicians"])
            changed = audit_clinicians(request.user, locked, before)
            if changed:
                # a change of the patient, so that a page opened before it (this one in
                # another tab, the admin's patient page) is refused instead of putting the
                # old team back (PatientVersionForm)
                locked.save(update_fields=["updated_at"])
        if changed:
            messages.success(request, f"Care team saved ({', '.join(changed)}).")
        else:
            messages.info(request, "Nothing changed.")
        if not form.cleaned_data["clinicians"]:  # the team as saved
            messages.warning(request, f"{patient.name}: {EMPTY_CARE_TEAM_MESSAGE}")
        return redirect("patient-page", pk=pk)
    return render(request, "monitoring/manage_care_team.html", {"patient": patient, "form": form})


def _confirm_page(
    request, *, title: str, consequences: list[str], button: str, cancel_url, form=None
):
    """The page a destructive management action shows on GET: what it will do, and a button
    that POSTs it. A one-click button stopped a patient's monitoring on a slip of the finger
    (the Unassign buttons stand in a column, one a device). ``form``: fields the action asks
    for (readmission's ward and bed), shown above the button."""
    context = {
        "title": title,
        "consequences": consequences,
        "button": button,
        "cancel_url": cancel_url,
        "form": form,
    }
    return render(request, "monitoring/manage_confirm.html", context)


@staff_required
@require_http_methods(["GET", "POST"])
def discharge_patient(request, pk: int):
    """Discharge: the patient leaves the station; records and alarms stay for review.

    GET asks for confirmation, naming what discharge ends; POST discharges. Their devices are
    unassigned (audited), their live recordings closed and their open alarms resolved: a
    device still streaming would otherwise record, and raise alarms, for a patient no station
    shows, where nobody can see or acknowledge them. Ingest refuses a device without a
    patient (403).
    """
    if request.method == "GET":
        patient = get_object_or_404(Patient, pk=pk)
        if not patient.is_active:
            messages.info(request, f"{patient.name} is already discharged.")
            return redirect("patient-page", pk=patient.pk)
        serials = list(patient.devices.order_by("serial").values_list("serial", flat=True))
        n_open = patient.alarms.open().count()
        consequences = [
            f"{patient.name} leaves the central station; their recordings, alarms and audit "
            "trail stay for review.",
            (
                f"Device {', '.join(serials)} is unassigned and its live recording closed: "
                "monitoring stops."
                if serials
                else "No device is assigned."
            ),
            (
                f"Their open alarms ({n_open}) are resolved; no new alarm is raised for them."
                if n_open
                else "No new alarm is raised for them."
            ),
            "To monitor them again, readmit them (Readmit… on their page) and assign a device.",
        ]
        return _confirm_page(
            request,
            title=f"Discharge {patient.name} (MRN {patient.mrn})?",
            consequences=consequences,
            button="Discharge",
            cancel_url=reverse("patient-page", args=[patient.pk]),
        )
    with transaction.atomic():
        # read under the lock: two discharges at once (two staff, a double click) end the
        # monitoring and write the audit entry once
        patient = get_object_or_404(Patient.objects.select_for_update(), pk=pk)
        discharged_here = patient.is_active
        if discharged_here:
            patient.is_active = False
            patient.save(update_fields=["is_active", "updated_at"])
            AuditEntry.record(request.user, patient, "is_active", True, False)
            serials = end_monitoring(patient, request.user)
    if discharged_here:
        if serials:
            noun = "device" if len(serials) == 1 else "devices"
            unassigned = f"; {noun} {', '.join(serials)} unassigned"
        else:
            unassigned = ""
        messages.success(request, f"Discharged {patient.name}{unassigned}.")
    return redirect("patient-page", pk=patient.pk)


def _discharged_answer(request, patient: Patient):
    # a device given to a patient no station shows would record and alarm for nobody
    messages.error(
        request, f"{patient.name} is discharged: readmit them (Readmit… below) to assign a device."
    )
    return redirect("patient-page", pk=patient.pk)


def _readmit_consequences(patient: Patient) -> list[str]:
    """What readmission brings back and what it does not, for the confirmation page."""
    team = ", ".join(sorted(patient.clinicians.values_list("username", flat=True)))
    n_recipients = patient.alarm_recipients.count()
    return [
        f"{patient.name} returns to the central station, with their recordings, alarms and "
        "audit trail on this same record.",
        f"Their alarm limits are kept (HR {patient.hr_low_limit_bpm}–"
        f"{patient.hr_high_limit_bpm} bpm, pause {patient.pause_limit_s:g} s, PVC "
        f"{patient.pvc_limit_per_min}/min), and so are their alarm recipients ({n_recipients}) "
        f"and care team ({team or 'nobody: only staff see them'}): discharge kept them too. "
        "Change them on their page once readmitted (Alarm limits and recipients, Care team).",
        "No device is assigned (the one they wore may be someone else's by now): assign one on "
        "their page to monitor them.",
        "The recordings discharge closed stay closed and the alarms it resolved stay "
        "resolved; a new device session starts a new recording.",
    ]


def _already_admitted(request, patient: Patient, *, refused: bool):
    if refused:
        messages.error(request, f"{patient.name} is already admitted: nothing to readmit.")
    else:
        messages.info(request, f"{patient.name} is already admitted.")
    return redirect("patient-page", pk=patient.pk)


@staff_required
@require_http_methods(["GET", "POST"])
def readmit_patient(request, pk: int):
    """Readmit a discharged patient who comes back: the same patient row, so their history
    stays on one record (admitting them again is refused: the MRN is unique).

    GET asks for confirmation, with the ward and bed they go to (their last ones offered, or
    those given in the query, as the admit page's offer passes them); POST readmits. Only
    ``is_active`` and the place change: no device is assigned, the recordings and alarms that
    discharge closed and resolved stay so, and the limits, alarm recipients and care team are
    kept, since discharge does not clear them. Audited as discharge is: ``is_active`` False ->
    True, and ``ward`` and ``bed`` when they changed.
    """
    patient = get_object_or_404(Patient, pk=pk)
    if patient.is_active:
        return _already_admitted(request, patient, refused=request.method == "POST")
    # the place typed on the admit page, when its offer to readmit was followed
    initial = {field: request.GET[field] for field in ("ward", "bed") if request.GET.get(field)}
    form = ReadmitForm(request.POST or None, instance=patient, initial=initial)

    def confirm_page():
        return _confirm_page(
            request,
            title=f"Readmit {patient.name} (MRN {patient.mrn})?",
            consequences=_readmit_consequences(patient),
            button="Readmit",
            cancel_url=reverse("patient-page", args=[patient.pk]),
            form=form,
        )

    if request.method != "POST" or not form.is_valid():
        return confirm_page()
    with transaction.atomic():
        # read under the lock: two readmissions at once (two staff, a double click), or one
        # racing a discharge, change the patient and write the audit entries once
        patient = get_object_or_404(Patient.objects.select_for_update(), pk=pk)
        readmitted_here = not patient.is_active
        # the bed again, under its lock (taken after the patient's row, as the admin takes
        # them): another admission may have taken it since the form was validated
        bed_free = not readmitted_here or check_bed_free(form, form.cleaned_data, lock=True)
        if readmitted_here and bed_free:
            before = {"is_active": False, "ward": patient.ward, "bed": patient.bed}
            patient.is_active = True
            patient.ward = form.cleaned_data["ward"]
            patient.bed = form.cleaned_data["bed"]
            patient.save(update_fields=["is_active", "ward", "bed", "updated_at"])
            audit_changes(request.user, patient, before)
    if not bed_free:  # the page again, with the form's error naming who took the bed
        return confirm_page()
    if not readmitted_here:
        return _already_admitted(request, patient, refused=True)
    place = " ".join(part for part in (patient.ward, patient.bed) if part)
    messages.success(
        request,
        f"Readmitted {patient.name}" + (f" ({place})" if place else "") + ": assign a device "
        "to monitor them.",
    )
    _recipients_warning(request, patient)
    return redirect("patient-page", pk=patient.pk)


@staff_required
def assign_device(request, pk: int):
    """Assign a device to a patient (moving it from another patient, audited on both). A
    patient has one device at a time (``one_device_per_patient``): the one it held before is
    unassigned, as a telemetry pack is swapped for another."""
    patient = get_object_or_404(Patient, pk=pk)
    if not patient.is_active:
        return _discharged_answer(request, patient)
    form = AssignDeviceForm(request.POST or None, patient=patient)
    if request.method != "POST" or not form.is_valid():
        return render(request, "monitoring/manage_device.html", {"patient": patient, "form": form})
    with transaction.atomic():
        # The patient's row locked: a discharge, or another assignment to the same patient,
        # waits for this one or is seen by it, so neither leaves a discharged patient with a
        # device nor makes this one fail on the one-device constraint. "No key": the audit
        # entries of a concurrent swap may still reference the row. The devices, the chosen
        # one and the patient's, in one query in id order, so that two staff swapping two
        # devices between two patients at once cannot lock them in opposite orders.
        patient = Patient.objects.select_for_update(no_key=True).get(pk=patient.pk)
        chosen_pk = form.cleaned_data["device"].pk
        locked = Device.objects.select_for_update(of=("self",))
        locked = locked.filter(Q(pk=chosen_pk) | Q(patient=patient))
        locked = list(locked.select_related("patient").order_by("pk"))
        device = next(each for each in locked if each.pk == chosen_pk)
        previous, replaced = device.patient, []
        if not patient.is_active:
            return _discharged_answer(request, patient)
        if previous != patient:
            replaced = [each for each in locked if each.pk != chosen_pk]
            for old_device in replaced:
                unassign(old_device, request.user)
            device.patient = patient
            device.save(update_fields=["patient"])
            if previous is not None:
                AuditEntry.record(request.user, previous, "device", device.serial, None)
            AuditEntry.record(request.user, patient, "device", None, device.serial)
    if previous != patient:
        notes = [f"moved from {previous.name}"] if previous else []
        notes += [f"replacing {old.serial}, now unassigned" for old in replaced]
        note = f" ({'; '.join(notes)})" if notes else ""
        messages.success(request, f"Device {device.serial} assigned to {patient.name}{note}.")
    return redirect("patient-page", pk=patient.pk)


@staff_required
@require_http_methods(["GET", "POST"])
def unassign_device(request, pk: int):
    """Take a device away from its patient; its live recording, if any, is left to close.
    GET asks for confirmation (the patient's monitoring stops); POST unassigns."""
    device = get_object_or_404(Device.objects.select_related("patient"), pk=pk)
    patient = device.patient
    if request.method == "GET":
        if patient is None:
            messages.info(request, f"Device {device.serial} is not assigned to anyone.")
            return redirect("manage")
        return _confirm_page(
            request,
            title=f"Unassign {device.serial} from {patient.name} (MRN {patient.mrn})?",
            consequences=[
                f"{patient.name}'s monitoring stops: the device's next data is refused and "
                "no device-offline alarm is raised for them.",
                "Assign them another device on their page to monitor them again.",
            ],
            button="Unassign",
            cancel_url=reverse("patient-page", args=[patient.pk]),
        )
    if patient is not None:
        with transaction.atomic():
            unassign(device, request.user)
        messages.success(request, f"Device {device.serial} unassigned from {patient.name}.")
        return redirect("patient-page", pk=patient.pk)
    return redirect("manage")
