"""A patient's devices and discharge: the rules the management pages and the admin share.

A discharged patient leaves the station, so nothing may go on recording or alarming for them:
discharge unassigns their device, closes their live recordings and resolves their open
alarms, whichever page did it, and a discharged patient cannot be given a device.

Also the order patients are listed in by ward and bed (``by_bed``): the station, the home
and manage lists share it.
"""

import re

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


# A run of ASCII digits: the part of a bed or ward name compared as a number.
_DIGITS = re.compile(r"([0-9]+)")


def natural_key(text: str) -> tuple:
    """``text`` as a sort key that compares its numbers as numbers, letter case aside:
    "2" < "10" < "101", "A2" < "A10", "icu" beside "ICU". Ward and bed are text fields, and
    the database's text order put bed 101 ... 137 between 1 and 2 on the station.

    ``re.split`` with a group alternates text and digits, so position i holds text at even i
    and a number at odd i in every key: two keys never compare a number with a text. The
    text itself last, so that "01" and "1" (or "a1" and "A1") still sort the same way every
    time."""
    parts = _DIGITS.split(text.casefold())
    return (tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), text)


def bed_order_key(patient: Patient) -> tuple:
    """A patient's place in a list by ward then bed (``natural_key``), then name and id.
    The ward as typed after its natural key: wards differing only in letter case stay
    contiguous, so the station's ``regroup`` by ward makes one section of each."""
    return (
        natural_key(patient.ward),
        patient.ward,
        natural_key(patient.bed),
        patient.name.casefold(),
        patient.pk or 0,
    )


def by_bed(patients) -> list:
    """``patients`` (a queryset, read in its one query, or a list) as a list in ward and bed
    order (``bed_order_key``). Sorted here, not by the database: SQL would need a natural
    collation that neither SQLite nor PostgreSQL has by default."""
    return sorted(patients, key=bed_order_key)
