"""Admin for every monitoring model, laid out for a monitoring team's daily lookups.

Device tokens: creating a device, or the "rotate token" button on its page, renders the new
token on a page of its own, once. It never goes into a message, the session or a cookie.
"""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from monitoring.admissions import end_monitoring
from monitoring.forms import (
    LIMIT_FIELDS,
    RECIPIENT_AUDIT_FIELD,
    STALE_PATIENT_MESSAGE,
    AdminLoginForm,
    PatientVersionForm,
    audit_changes,
    audit_clinicians,
    audit_device_token,
    audit_recipients,
    check_bed_free,
    clean_unique_mrn,
    clinician_names,
    recipient_labels,
)
from monitoring.models import (
    Alarm,
    AlarmRecipient,
    ApiToken,
    AuditEntry,
    Beat,
    Device,
    Episode,
    GivenUpGap,
    Heartbeat,
    Notification,
    NotificationAttempt,
    NotificationState,
    Patient,
    Prediction,
    Recording,
    SampleChunk,
)

# what the admin's patient form may change that the audit trail keeps, as /manage/ keeps it:
# the limits, admission (is_active) and the place (readmission audits the ward and bed)
AUDITED_FIELDS = (*LIMIT_FIELDS, "is_active", "ward", "bed")
# a patient added here: the starting limits, as the admit page audits them, and is_active
AUDITED_ON_ADD = (*LIMIT_FIELDS, "is_active")


# the admin's login says when failed logins locked an account, as /login/ does
admin.site.login_form = AdminLoginForm


class PatientAdminForm(PatientVersionForm):
    # no Meta: PatientAdmin.fieldsets pick the fields, as for the admin's default form

    clean_mrn = clean_unique_mrn

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is not None:
            # The row locked until the admin's transaction commits (its change view runs in
            # one): a discharge or a limit saved on /manage/ since this page was opened is
            # not undone by the values this form sends back.
            locked = Patient.objects.select_for_update().get(pk=self.instance.pk)
            if not self.opened_on(locked):
                raise forms.ValidationError(
                    STALE_PATIENT_MESSAGE + " Reload the page to see the patient as they are now."
                )
        # the bed under its lock (after the patient's row, as readmission takes them), held
        # until the admin's transaction commits: no admission takes it in between
        check_bed_free(self, cleaned, lock=True)
        return cleaned


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    form = PatientAdminForm
    list_display = [
        "mrn",
        "name",
        "ward",
        "bed",
        "sex",
        "birth_date",
        "is_active",
        "clinician_count",
        "hr_low_limit_bpm",
        "hr_high_limit_bpm",
    ]
    list_filter = ["is_active", "ward", "sex"]
    search_fields = ["mrn", "name", "ward", "bed", "clinicians__username"]
    filter_horizontal = ["clinicians"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["mrn", "name", "birth_date", "sex", "notes", "is_active"]}),
        ("Location", {"fields": ["ward", "bed"]}),
        ("Care team", {"fields": ["clinicians"]}),
        (
            "Alarm limits",
            {
                "fields": [
                    "hr_low_limit_bpm",
                    "hr_high_limit_bpm",
                    "pause_limit_s",
                    "pvc_limit_per_min",
                    "sustained_arrhythmia_alarm",
                ]
            },
        ),
        # opened_version: hidden, when the patient last changed as the page was opened
        ("Record", {"fields": ["created_at", "updated_at", "opened_version"]}),
    ]

    def get_queryset(self, request):
        # distinct: a search on clinicians__username joins the clinicians a second time
        n_clinicians = Count("clinicians", distinct=True)
        return super().get_queryset(request).annotate(n_clinicians=n_clinicians)

    def save_model(self, request, obj, form, change):
        # the same audit trail as /manage/: a limit or an admission changed here is kept too
        # (the admin saves inside a transaction; the row is locked to read what it replaces)
        old = None
        if change:
            old = Patient.objects.select_for_update().filter(pk=obj.pk).values(*AUDITED_FIELDS)
            old = old.first()
        super().save_model(request, obj, form, change)
        audit_changes(request.user, obj, dict.fromkeys(AUDITED_ON_ADD) if old is None else old)
        if old is not None and old["is_active"] and not obj.is_active:
            # a discharge here ends the monitoring as /manage/'s discharge does
            serials = end_monitoring(obj, request.user)
            if serials:
                self.message_user(request, f"Devices unassigned: {', '.join(serials)}.")

    def save_related(self, request, form, formsets, change):
        # the care team (who sees the patient) is audited as on /manage/: read before the
        # form saves it, inside the admin's transaction (the patient's row is locked on a
        # change, save_model)
        before = clinician_names(form.instance) if change else set()
        super().save_related(request, form, formsets, change)
        audit_clinicians(request.user, form.instance, before)

    @admin.display(description="clinicians", ordering="n_clinicians")
    def clinician_count(self, patient):
        return patient.n_clinicians


class DeviceAdminForm(forms.ModelForm):
    # no Meta: DeviceAdmin.fields picks the fields, as for the admin's default form

    def clean(self):
        cleaned = super().clean()
        patient = cleaned.get("patient")
        if patient is not None:
            # The patient's row locked until the admin's transaction commits (its change view
            # runs in one), and read again under the lock: a discharge committed since the
            # field was read is seen here (Device.clean then refuses, as the assign page does)
            # or waits for this save and unassigns the device itself.
            cleaned["patient"] = Patient.objects.select_for_update(no_key=True).get(pk=patient.pk)
        return cleaned


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    form = DeviceAdminForm
    list_display = [
        "serial",
        "label",
        "patient",
        "firmware_version",
        "sampling_rate_hz",
        "gain_adc_per_mv",
        "lead_names",
        "is_active",
        "token_hint",
        "last_seen_at",
        "battery_pct",  # as its last chunk reported it (the live pages show it only while current)
    ]
    list_filter = ["is_active", "firmware_version", "sampling_rate_hz"]
    search_fields = ["serial", "label", "patient__mrn", "patient__name"]
    autocomplete_fields = ["patient"]
    list_select_related = ["patient"]  # nullable: the admin's own select_related skips it
    readonly_fields = [
        "assigned_at",
        "token_status",
        "token_issued_at",
        "last_seen_at",
        "created_at",
    ]
    fields = [
        "serial",
        "label",
        "patient",
        "assigned_at",
        "firmware_version",
        "sampling_rate_hz",
        "gain_adc_per_mv",
        "lead_names",
        "is_active",
        "token_status",
        "token_issued_at",
        "last_seen_at",
        "created_at",
    ]

    @admin.display(description="token")
    def token_status(self, device):
        if not device.pk:
            return "A token is issued and shown once when you save."
        rotate_url = reverse("admin:monitoring_device_rotate_token", args=[device.pk])
        hint = f"{device.token_hint}…" if device.token_hint else "none"
        return format_html('{} <a class="button" href="{}">Rotate token</a>', hint, rotate_url)

    def get_urls(self):
        custom = [
            path(
                "<int:device_id>/rotate-token/",
                self.admin_site.admin_view(self.rotate_token_view),
                name="monitoring_device_rotate_token",
            )
        ]
        return custom + super().get_urls()

    def save_model(self, request, obj, form, change):
        previous = None
        if change:
            previous = Device.objects.select_for_update().filter(pk=obj.pk).values("patient")
            previous = previous.first()["patient"]
        super().save_model(request, obj, form, change)
        if not change:
            request._issued_device_token = obj.issue_token()
        if previous != obj.patient_id:  # audited on both patients, as /manage/ does
            if previous is not None:
                patient = Patient.objects.get(pk=previous)
                AuditEntry.record(request.user, patient, "device", obj.serial, None)
            if obj.patient is not None:
                AuditEntry.record(request.user, obj.patient, "device", None, obj.serial)
        if not change:
            # a device created for a patient: its first token goes into their trail too, after
            # the assignment (the admin's add view runs in one transaction)
            audit_device_token(request.user, obj, "")

    # A deleted device leaves its patient without one: audited as an unassignment, in the
    # transaction of the delete (the bulk action's is not wrapped in one by the admin).
    def delete_model(self, request, obj):
        with transaction.atomic():
            if obj.patient_id is not None:
                AuditEntry.record(request.user, obj.patient, "device", obj.serial, None)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for device in queryset.filter(patient__isnull=False).select_related("patient"):
                AuditEntry.record(request.user, device.patient, "device", device.serial, None)
            super().delete_queryset(request, queryset)

    def response_add(self, request, obj, post_url_continue=None):
        token = getattr(request, "_issued_device_token", None)
        if token:
            return self._token_page(request, obj, token, "Device created")
        return super().response_add(request, obj, post_url_continue)

    def rotate_token_view(self, request, device_id: int):
        device = get_object_or_404(Device, pk=device_id)
        if not self.has_change_permission(request, device):
            raise PermissionDenied
        if request.method == "POST":
            with transaction.atomic():
                # the row locked and read again: the audit entry goes to the patient who wears
                # the device when its token changes, with the hint of the token it replaces
                # (an assignment or another rotation committed since the GET is seen here)
                device = Device.objects.select_for_update().get(pk=device.pk)
                old_hint = device.token_hint
                token = device.issue_token()
                audit_device_token(request.user, device, old_hint)
            self.log_change(request, device, "Rotated the device token.")
            return self._token_page(request, device, token, "Token rotated")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "device": device,
            "title": f"Rotate the token of {device.serial}?",
        }
        return TemplateResponse(request, "admin/monitoring/device/rotate_token.html", context)

    def _token_page(self, request, device, token: str, title: str):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "device": device,
            "token": token,
            "title": title,
        }
        response = TemplateResponse(request, "admin/monitoring/device/token.html", context)
        response["Cache-Control"] = "no-store"  # the token must not linger in any cache
        return response


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Users' REST API keys: issued here and shown once; revoked by deleting them."""

    list_display = ["hint", "user", "name", "created_at", "last_used_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "name", "hint"]
    autocomplete_fields = ["user"]
    fields = ["user", "name", "hint", "created_at", "last_used_at"]
    readonly_fields = ["hint", "created_at", "last_used_at"]

    def get_readonly_fields(self, request, obj=None):
        # A key belongs to the user it was issued to (another user gets a key of their own),
        # and it acts as that user: a staff member who is not a superuser issues keys only
        # for themselves, or they could give themselves a superuser's powers.
        if obj is not None or not request.user.is_superuser:
            return [*self.readonly_fields, "user"]
        return self.readonly_fields

    def get_queryset(self, request):
        # ...and sees and revokes only their own
        tokens = super().get_queryset(request)
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def save_model(self, request, obj, form, change):
        if not change:
            if not request.user.is_superuser:
                obj.user = request.user
            request._issued_api_key = obj.new_key()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "api_token": obj,
            "key": request._issued_api_key,
            "title": "API token issued",
        }
        response = TemplateResponse(request, "admin/monitoring/apitoken/key.html", context)
        response["Cache-Control"] = "no-store"  # the key must not linger in any cache
        return response


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the system (stored samples, model verdicts, alarms, the audit
    trail): view, never edit or delete. One deleted sample chunk or beat would leave a
    recording with a hole its analysis never had; a deleted audit entry, an unexplained
    change."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Recording)
class RecordingAdmin(ReadOnlyAdmin):
    """Read only: a recording's patient, rate, gain or leads changed here would move its samples
    to another patient (its alarms staying behind) or make every stored sample read
    differently, with no audit entry. A superuser may delete a recording whole (a wrong
    upload), with its samples and analysis."""

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and admin.ModelAdmin.has_delete_permission(
            self, request, obj
        )

    def get_deleted_objects(self, objs, request):
        # The recording's samples, beats and verdicts go with it: their own admins refuse to
        # delete them one by one (a hole in a recording), which Django would otherwise count
        # as a missing permission for the whole.
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, model_count, set(), protected

    list_display = [
        "id",
        "patient",
        "device",
        "source",
        "status",
        "sampling_rate_hz",
        "gain_adc_per_mv",
        "n_channels",
        "started_at",
        "ended_at",
        "analysis_cursor",
    ]
    list_filter = ["status", "source", "n_channels", "sampling_rate_hz"]
    search_fields = ["patient__mrn", "patient__name", "device__serial", "source_name"]
    autocomplete_fields = ["patient", "device"]
    readonly_fields = [
        "analysis_cursor",
        "uploaded_by",
        "created_at",
        "upload_format",
        "analysis_status",
        "analysis_error",
        "analysis_summary",
        "analysis_agreement",
        "analyzed_at",
    ]
    date_hierarchy = "started_at"
    list_select_related = ["patient", "device"]


@admin.register(SampleChunk)
class SampleChunkAdmin(ReadOnlyAdmin):
    list_display = ["recording", "seq", "first_sample", "n_samples", "received_at"]
    list_filter = ["recording__status"]
    search_fields = ["recording__patient__mrn", "recording__device__serial"]
    exclude = ["data"]  # raw bytes are for programs; the admin shows the framing
    date_hierarchy = "received_at"
    list_select_related = ["recording__patient"]  # a recording's name shows its patient


@admin.register(GivenUpGap)
class GivenUpGapAdmin(ReadOnlyAdmin):
    # the samples the live analysis went past without (monitoring/backfill.py): a row with
    # backfill_failed is a late chunk whose beats the backfill could not store (logged)
    list_display = ["recording", "start_sample", "end_sample", "given_up_at", "backfill_failed"]
    list_filter = ["backfill_failed"]
    search_fields = ["recording__patient__mrn", "recording__device__serial"]
    date_hierarchy = "given_up_at"
    list_select_related = ["recording__patient"]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "recording",
        "model_name",
        "model_version",
        "label",
        "window_start",
    ]
    list_filter = ["model_name", "model_version", "label"]
    search_fields = ["recording__patient__mrn", "model_name", "label"]
    date_hierarchy = "created_at"
    list_select_related = ["recording__patient"]  # a recording's name shows its patient


@admin.register(Beat)
class BeatAdmin(ReadOnlyAdmin):
    """Beats are written by the analysis only; the admin shows them for lookups."""

    list_display = ["recording", "index", "sample", "label", "confidence", "reference_label", "row"]
    list_filter = ["label", "reference_label", "recording__upload_format"]
    search_fields = ["recording__patient__mrn", "recording__source_name"]
    list_select_related = ["recording__patient"]  # a recording's name shows its patient


@admin.register(Episode)
class EpisodeAdmin(ReadOnlyAdmin):
    list_display = ["recording", "kind", "start_s", "end_s"]
    list_filter = ["kind"]
    search_fields = ["recording__patient__mrn", "recording__source_name"]
    list_select_related = ["recording__patient"]  # a recording's name shows its patient


@admin.register(Alarm)
class AlarmAdmin(ReadOnlyAdmin):
    """Alarms are raised and resolved by the rules; acknowledge them in the API or dashboard."""

    list_display = [
        "raised_at",
        "patient",
        "priority",
        "kind",
        "message",
        "state",
        "acknowledged_by",
        "resolved_at",
    ]
    list_filter = ["state", "priority", "kind"]
    search_fields = ["patient__mrn", "patient__name", "message"]
    date_hierarchy = "raised_at"
    list_select_related = ["patient", "acknowledged_by"]


@admin.register(AlarmRecipient)
class AlarmRecipientAdmin(admin.ModelAdmin):
    """Recipients changed here are audited as on /manage/ (field ``alarm_recipient``)."""

    list_display = ["patient", "address", "transport", "escalation"]
    list_filter = ["transport", "escalation"]
    search_fields = ["patient__mrn", "patient__name", "address"]
    autocomplete_fields = ["patient"]

    def save_model(self, request, obj, form, change):
        # the same diff of a patient's recipients as /manage/ (monitoring/forms.py): a
        # recipient moved to another patient is removed from the one it had, added to this one
        # (the admin saves inside a transaction, so the locks below hold until it commits)
        patient_ids = [obj.patient_id]
        if change:  # the row this replaces, locked; an add has none
            old_patient_id = (
                AlarmRecipient.objects.select_for_update()
                .filter(pk=obj.pk)
                .values_list("patient_id", flat=True)
                .first()
            )
            if old_patient_id is not None and old_patient_id != obj.patient_id:
                patient_ids.insert(0, old_patient_id)
        # the patients locked as /manage/ locks the one whose recipients it saves, so that no
        # save there lands between the labels before and after (its change would be audited
        # twice); in id order, so that two admin saves take them in the same order
        locked = Patient.objects.select_for_update().filter(pk__in=patient_ids).order_by("pk")
        patients = {patient.pk: patient for patient in locked}
        before = [(patients[pk], recipient_labels(patients[pk])) for pk in patient_ids]
        super().save_model(request, obj, form, change)
        for patient, labels in before:
            audit_recipients(request.user, patient, labels)

    def delete_model(self, request, obj):
        AuditEntry.record(request.user, obj.patient, RECIPIENT_AUDIT_FIELD, obj, None)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for recipient in queryset.select_related("patient"):
            AuditEntry.record(
                request.user, recipient.patient, RECIPIENT_AUDIT_FIELD, recipient, None
            )
        super().delete_queryset(request, queryset)


@admin.register(NotificationAttempt)
class NotificationAttemptAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "notification", "ok", "error"]
    list_filter = ["ok"]
    search_fields = ["notification__recipient", "error"]
    list_select_related = ["notification"]


class NotificationAttemptInline(admin.TabularInline):
    model = NotificationAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["started_at", "ok", "error"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """Notifications as the system wrote them; a failed one can be sent again (the "Send
    again" action: back to pending, due now, for the periodic check to queue), by whoever holds
    the change permission on notifications, and the admin's history says who did."""

    actions = ["send_again"]
    list_display = [
        "created_at",
        "alarm",
        "recipient",
        "transport",
        "escalation",
        "state",
        "attempts",
        "next_attempt_at",
        "sent_at",
    ]
    list_filter = ["state", "transport", "escalation"]
    search_fields = ["recipient", "alarm__patient__mrn"]
    list_select_related = ["alarm"]
    inlines = [NotificationAttemptInline]

    def has_send_again_permission(self, request) -> bool:
        # the form stays read-only (has_change_permission); the model's change permission
        # allows this one change
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(description="Send again (failed ones)", permissions=["send_again"])
    def send_again(self, request, queryset):
        """Each selected failed notification back to pending, due now; the others are left as
        they are. One more try: it is past its retries, so a failure fails it again."""
        now = timezone.now()
        again = []
        with transaction.atomic():
            for notification in queryset.filter(state=NotificationState.FAILED):
                # only while still failed: a resend in another session counts once
                if Notification.objects.filter(
                    pk=notification.pk, state=NotificationState.FAILED
                ).update(state=NotificationState.PENDING, next_attempt_at=now, claimed_at=None):
                    message = f"Sent again (was failed: {notification.last_error[:200]})."
                    self.log_change(request, notification, message)
                    again.append(notification.pk)
        left = queryset.exclude(pk__in=again).count()
        when = f"the periodic alarm check queues them within {settings.ALARM_CHECK_S:g} s"
        self.message_user(request, f"{len(again)} notification(s) pending again; {when}.")
        if left:
            self.message_user(
                request, f"{left} left as they were (only failed ones are sent again).", "warning"
            )


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    """When each periodic task last completed (what ``/health`` reads), written by the tasks."""

    list_display = ["name", "completed_at"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit trail of patient settings, written by the dashboard's management pages only:
    an entry edited afterwards would not be an audit trail."""

    list_display = ["changed_at", "patient", "user", "field", "old_value", "new_value"]
    list_filter = ["field"]
    search_fields = ["patient__mrn", "patient__name", "user__username"]
    date_hierarchy = "changed_at"
    list_select_related = ["patient", "user"]
