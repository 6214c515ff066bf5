"""A patient's devices and discharge: the rules the management pages and the admin share.

A discharged patient leaves the station, so nothing may go on recording or alarming for them:
discharge unassigns their device, closes their live recordings and resolves their open
alarms, whichever page did it, and a discharged patient cannot be given a device.
"""

from monitoring.alarms import resolve_on_discharge
from monitoring.ingest import close_recording
from monitoring.models import AuditEntry, Device, Patient, Recording


def unassign(device: Device, user) -> None:
    """Take the device from its patient, audited on that patient (inside a transaction)."""
    patient = device.patient
    device.patient = None
    device.save(update_fields=["patient"])
    AuditEntry.record(user, patient, "device", device.serial, None)


def end_monitoring(patient: Patient, user) -> list[str]:
    """What discharge does beyond ``is_active``: the serials of the devices it unassigned.

    Call it inside the transaction that discharges the patient. Devices first, locked as
    ingest locks them: a chunk being stored now commits first (its recording is then closed
    below), the next one finds no patient (ingest refuses a device without one, 403).
    """
    devices = Device.objects.select_for_update().filter(patient=patient)
    serials = []
    for device in devices.order_by("serial"):
        unassign(device, user)
        serials.append(device.serial)
    live_recordings = Recording.objects.select_for_update().filter(
        patient=patient, status=Recording.Status.LIVE
    )
    # .defer: closing does not need the analyzer's state (about 120 kB)
    for recording in live_recordings.defer("stream_state"):
        close_recording(recording, Recording.ClosedBy.DISCHARGE)
    resolve_on_discharge(patient)
    return serials
