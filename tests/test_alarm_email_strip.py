"""The alarm e-mail's strip and review link (monitoring.notifications).

Before the fix a strip near the start of a recording was cut (an AF alarm at 0.6 s got
0.0-4.6 s instead of 12 s) and the review link opened the page at 0 s.
"""

import io
import re

import numpy as np
import pytest
from django.core import mail
from PIL import Image

from monitoring import notifications, strips
from monitoring.models import Notification, Transport
from monitoring.notifications import (
    STRIP_AFTER_S,
    STRIP_BEFORE_S,
    alarm_strip_png,
    send_notification,
)
from tests.test_alarms import FS_HZ, hr_alarm, store_signal

pytestmark = pytest.mark.django_db

STRIP_N = round((STRIP_BEFORE_S + STRIP_AFTER_S) * FS_HZ)


def ecg(recording, seconds: float) -> None:
    """A spiky trace at 75 bpm, stored in one chunk."""
    t = np.arange(round(seconds * FS_HZ)) / FS_HZ
    signal = 0.05 * np.sin(2 * np.pi * 0.3 * t)
    for beat_s in np.arange(0.4, seconds, 0.8):
        signal += 1.2 * np.exp(-(((t - beat_s) / 0.012) ** 2))
    store_signal(recording, signal)


@pytest.mark.parametrize(
    ("event_s", "window_s"),
    [
        (3.6, (0.0, 12.0)),  # near the start: moved forward, not cut to 0-7.6 s
        (0.0, (0.0, 12.0)),  # a pause from the very start
        (30.0, (22.0, 34.0)),  # in the middle: 8 s before, 4 s after
        (58.5, (48.0, 60.0)),  # near the end: moved back, not cut to 50.5-60 s
    ],
)
def test_the_strip_keeps_its_length_and_moves_to_fit(recording, monkeypatch, event_s, window_s):
    ecg(recording, 60.0)
    start, end = drawn_window(recording, monkeypatch, round(event_s * FS_HZ))
    assert (start / FS_HZ, end / FS_HZ) == window_s


def test_a_recording_shorter_than_the_strip_gives_all_of_it(recording, monkeypatch):
    ecg(recording, 5.0)
    assert drawn_window(recording, monkeypatch, round(2 * FS_HZ)) == (0, round(5 * FS_HZ))


def drawn_window(recording, monkeypatch, event: int) -> tuple[int, int]:
    """The samples [start, end) the alarm's strip is drawn from (nothing is drawn)."""
    drawn = []

    def spy(recording, start, end, **kwargs):
        drawn.append((start, end))
        return b"png"

    monkeypatch.setattr(strips, "render_range_png", spy)  # imported when the strip is drawn
    assert alarm_strip_png(hr_alarm(recording, sample=event)) == b"png"
    [window] = drawn
    return window


def test_the_attached_png_covers_twelve_seconds_near_the_start(recording, monkeypatch):
    ecg(recording, 60.0)
    drawn = []
    original = strips.render_range_png

    def spy(recording, start, end, **kwargs):
        drawn.append((start, end, kwargs["marker_sample"]))
        return original(recording, start, end, **kwargs)

    monkeypatch.setattr(strips, "render_range_png", spy)  # imported when the strip is drawn
    event = round(3.6 * FS_HZ)
    png = alarm_strip_png(hr_alarm(recording, sample=event))
    assert drawn == [(0, STRIP_N, event)]
    # one row of 25 mm/s paper: 12 s of it is 300 mm (4.6 s drew half the width before)
    paper_px = (STRIP_BEFORE_S + STRIP_AFTER_S) * strips.PAPER_SPEED_MM_PER_S * strips.PNG_PX_PER_MM
    margins_px = (strips.LEFT_MM + strips.RIGHT_MM) * strips.PNG_PX_PER_MM
    assert Image.open(io.BytesIO(png)).size[0] == round(paper_px + margins_px)


def test_the_review_link_opens_at_the_event(recording, settings, monkeypatch):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://monitor.example.org"
    mail.outbox = []
    ecg(recording, 600.0)
    alarm = hr_alarm(recording, sample=round(412.5 * FS_HZ))
    notification = Notification.objects.create(
        alarm=alarm, recipient="nurse@example.org", transport=Transport.EMAIL
    )
    monkeypatch.setattr(notifications, "alarm_strip", lambda alarm: None)  # not drawn here
    assert send_notification(notification.pk) == "sent"
    [message] = mail.outbox
    [link] = re.findall(r"^Review: (\S+)$", message.body, flags=re.MULTILINE)
    # the review page's own fragment (review.js readHash): the strip's window, 8 s before
    # the event to 4 s after
    assert link == (f"https://monitor.example.org/recordings/{recording.pk}/review/#t=404.500&w=12")
