"""Webhooks reach public addresses only (or WEBHOOK_ALLOWED_NETWORKS): refused when saved and
when sent, after resolving the host, to the address checked; no redirect, no proxy; short
errors (monitoring/webhooks.py, docs/alarms.md "Webhook addresses")."""

import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError

from monitoring import webhooks
from monitoring.models import AlarmRecipient, Notification, NotificationState, Transport
from monitoring.notifications import schedule_notifications, send_notification
from tests.conftest import free_port
from tests.test_admin_site import admin_url
from tests.test_alarms import hr_alarm
from tests.test_dashboard import DEFAULT_LIMITS, opened, recipient_rows
from tests.test_settings import refusal, run_settings

pytestmark = pytest.mark.django_db

INTERNAL_URLS = [
    "http://127.0.0.1:6379/",
    "http://localhost:8000/admin/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/hook",
    "http://[::1]:8000/hook",
    "http://192.168.0.10/hook",
    "https://[fd00::5]/hook",  # IPv6 unique-local
    "http://0.0.0.0:8000/",  # noqa: S104 (unspecified: reaches this machine on Linux)
    "http://224.0.0.1/",  # multicast
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
]


class Hook:
    """A local HTTP(S) server that records every request (any method) and answers with the
    queued ``(status, headers)`` pairs, 204 when none is queued."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.requests, self.answers, self.server_names = [], [], []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hook.requests.append((self.command, self.path, self.headers, body))
                status, headers = hook.answers.pop(0) if hook.answers else (204, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = answer  # noqa: N815 (http.server's names)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    server = Hook()
    yield server
    server.stop()


class FakeDNS(dict):
    """``dns[host] = [ip, ...]`` (or a callable returning them) answers getaddrinfo for that
    host; other hosts resolve as usual. ``lookups`` lists the hosts asked for."""

    def __init__(self):
        super().__init__()
        self.lookups = []
        self.real = socket.getaddrinfo

    def getaddrinfo(self, host, port, *args, **kwargs):
        self.lookups.append(host)
        if host not in self:
            return self.real(host, port, *args, **kwargs)
        answer = self[host]() if callable(self[host]) else self[host]
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[ipaddress.ip_address(ip).version], socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in answer
        ]


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


def webhook_notification(recording, url: str) -> int:
    """A pending webhook notification to ``url`` (saved without the model's check, as a
    recipient saved before the check existed, or whose name resolved elsewhere then)."""
    AlarmRecipient.objects.create(patient=recording.patient, address=url, transport="webhook")
    [notification_id] = schedule_notifications(hr_alarm(recording))
    return notification_id


def last_error(notification_id: int) -> str:
    return Notification.objects.get(pk=notification_id).last_error


# --- When saved ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_the_model_refuses_a_webhook_to_an_internal_address(patient, url):
    recipient = AlarmRecipient(patient=patient, address=url, transport=Transport.WEBHOOK)
    with pytest.raises(ValidationError) as refused:
        recipient.full_clean()
    [message] = refused.value.message_dict["address"]
    assert message.startswith("Refused: ") and "which webhooks may not reach" in message
    assert "WEBHOOK_ALLOWED_NETWORKS" in message


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
        ("http://localhost:8000/admin/", "localhost resolves to a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://10.1.2.3/hook", "10.1.2.3 is a private address"),
        ("http://[::1]:8000/hook", "::1 is a loopback address"),
    ],
)
def test_the_limits_page_refuses_a_webhook_to_an_internal_address(
    client, staff_user, patient, url, kind
):
    client.force_login(staff_user)
    response = client.post(
        f"/manage/patients/{patient.pk}/limits/",
        {**opened(patient), **DEFAULT_LIMITS, **recipient_rows((url, "webhook", False))},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Refused: {kind}, which webhooks may not reach" in page
    assert not patient.alarm_recipients.exists()


def test_the_admin_refuses_a_webhook_to_an_internal_address(client, staff_user, patient):
    client.force_login(staff_user)
    form = {"patient": patient.pk, "address": "http://169.254.169.254/", "transport": "webhook"}
    response = client.post(admin_url(AlarmRecipient, "add"), form)
    assert response.status_code == 200
    assert "Refused: 169.254.169.254 is a link-local address" in response.content.decode()
    assert not AlarmRecipient.objects.exists()


def test_a_host_name_that_resolves_to_a_private_address_is_refused_when_saved(patient, dns):
    dns["pager.hospital.example"] = ["93.184.216.34", "10.20.0.15"]  # one is enough
    recipient = AlarmRecipient(
        patient=patient, address="https://pager.hospital.example/hook", transport="webhook"
    )
    with pytest.raises(ValidationError, match="pager.hospital.example resolves to a private"):
        recipient.full_clean()


def test_an_allowed_network_may_be_saved_and_the_rest_stays_refused(patient, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["10.20.0.15/32"]
    AlarmRecipient(patient=patient, address="http://10.20.0.15/page", transport="webhook").clean()
    with pytest.raises(ValidationError, match="10.20.0.16 is a private address"):
        AlarmRecipient(patient=patient, address="http://10.20.0.16/", transport="webhook").clean()


@pytest.mark.parametrize("port", [0, 65536, 99999])
def test_a_port_out_of_range_is_refused_when_saved(client, staff_user, patient, port):
    # Django's URLValidator lets it through; reading it used to be left to the send
    url = f"https://pager.example:{port}/hook"
    client.force_login(staff_user)
    response = client.post(
        f"/manage/patients/{patient.pk}/limits/",
        {**opened(patient), **DEFAULT_LIMITS, **recipient_rows((url, "webhook", False))},
    )
    assert response.status_code == 200
    assert "The port of a webhook address must be 1 to 65535" in response.content.decode()
    assert not patient.alarm_recipients.exists()


# --- When sent ----------------------------------------------------------------------------


def test_a_host_name_that_resolves_to_a_private_address_is_refused_when_sent(
    recording, dns, monkeypatch
):
    # public when the recipient was saved, private now (DNS rebinding): nothing is sent
    dns["pager.hospital.example"] = ["93.184.216.34"]
    url = "http://pager.hospital.example/hook"
    AlarmRecipient(patient=recording.patient, address=url, transport="webhook").full_clean()
    dns["pager.hospital.example"] = ["10.0.0.7"]
    connections = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connections.append(a))
    notification_id = webhook_notification(recording, url)
    assert send_notification(notification_id) == "retry"
    assert last_error(notification_id) == (
        "WebhookRefused: pager.hospital.example resolves to a private address, "
        "which webhooks may not reach"
    )
    assert connections == []


def test_a_recipient_saved_before_the_check_is_refused_when_sent(recording, hook):
    notification_id = webhook_notification(recording, f"http://127.0.0.1:{hook.port}/hook")
    assert send_notification(notification_id) == "retry"
    assert "127.0.0.1 is a loopback address" in last_error(notification_id)
    assert hook.requests == []


def test_it_connects_to_the_address_it_checked_not_to_a_second_lookup(
    recording, hook, dns, settings
):
    # the name resolves to the allowed address once, and to another loopback address after
    # that: a check followed by a connection that resolves again would go there instead
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    answers = [["127.0.0.1"]]
    dns["hook.test"] = lambda: answers.pop(0) if answers else ["127.0.0.2"]
    notification_id = webhook_notification(recording, f"http://hook.test:{hook.port}/in?x=1")
    assert send_notification(notification_id) == "sent"
    [(method, path, headers, body)] = hook.requests
    assert (method, path, headers["Host"]) == ("POST", "/in?x=1", f"hook.test:{hook.port}")
    assert json.loads(body)["notification_id"] == notification_id
    assert dns.lookups.count("hook.test") == 1
    # the next send resolves again, to an address that is not allowed, and sends nothing
    Notification.objects.filter(pk=notification_id).update(state=NotificationState.PENDING)
    assert send_notification(notification_id) == "retry"
    assert "hook.test resolves to a loopback address" in last_error(notification_id)
    assert len(hook.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_is_a_failure_naming_its_location_and_is_not_followed(
    recording, hook, settings, status
):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    hook.answers.append((status, {"Location": f"http://127.0.0.1:{hook.port}/elsewhere"}))
    notification_id = webhook_notification(recording, f"http://127.0.0.1:{hook.port}/hook")
    assert send_notification(notification_id) == "retry"
    assert last_error(notification_id) == (
        f"WebhookError: HTTP {status} redirect to "
        f"'http://127.0.0.1:{hook.port}/elsewhere', not followed"
    )
    assert [(method, path) for method, path, *_ in hook.requests] == [("POST", "/hook")]


def test_proxy_variables_are_not_used_for_webhooks(recording, hook, settings, monkeypatch):
    # a proxy would resolve and connect by itself, past the check
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    closed = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(name, closed)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # urllib reads them when it first builds its opener: afresh here, as in a worker started
    # with them set (and afresh after, without them)
    urllib.request.install_opener(None)
    try:
        notification_id = webhook_notification(recording, f"http://127.0.0.1:{hook.port}/hook")
        assert send_notification(notification_id) == "sent"
        assert len(hook.requests) == 1
    finally:
        monkeypatch.undo()
        urllib.request.install_opener(None)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("closed port", "WebhookError: connection refused"),
        (404, "WebhookError: HTTP 404"),
        (500, "WebhookError: HTTP 500"),
    ],
)
def test_a_failure_is_recorded_as_a_short_category(recording, hook, settings, answer, error):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    port = free_port() if answer == "closed port" else hook.port
    if answer != "closed port":
        hook.answers.append((answer, {}))
    notification_id = webhook_notification(recording, f"http://127.0.0.1:{port}/hook")
    assert send_notification(notification_id) == "retry"
    assert last_error(notification_id) == error


# --- HTTPS to the checked address ----------------------------------------------------------


def self_signed(name: str) -> tuple[bytes, bytes]:
    """A certificate for ``name`` (PEM) and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def tls_hook(tmp_path, monkeypatch):
    """An HTTPS hook for the name ``hook.test``, whose certificate the webhook trusts."""
    cert_pem, key_pem = self_signed("hook.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    real = ssl.create_default_context
    monkeypatch.setattr(
        webhooks.ssl, "create_default_context", lambda: real(cafile=tmp_path / "cert.pem")
    )
    server = Hook(tls=server_context)
    yield server
    server.stop()


def test_https_goes_to_the_checked_address_with_the_host_name_for_sni_and_certificate(
    recording, tls_hook, dns, settings
):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    dns["hook.test"] = ["127.0.0.1"]
    dns["impostor.test"] = ["127.0.0.1"]  # the same server, but not the name it proves
    notification_id = webhook_notification(recording, f"https://hook.test:{tls_hook.port}/in")
    assert send_notification(notification_id) == "sent"
    assert tls_hook.server_names == ["hook.test"]
    [(_, path, headers, _)] = tls_hook.requests
    assert (path, headers["Host"]) == ("/in", f"hook.test:{tls_hook.port}")
    Notification.objects.filter(pk=notification_id).update(
        recipient=f"https://impostor.test:{tls_hook.port}/in", state=NotificationState.PENDING
    )
    assert send_notification(notification_id) == "retry"
    assert last_error(notification_id) == (
        "WebhookError: TLS certificate not valid for impostor.test"
    )
    assert len(tls_hook.requests) == 1


# --- The setting --------------------------------------------------------------------------


def test_allowed_networks_default_to_none_and_a_bad_one_stops_the_start():
    code = (
        "import django; from django.conf import settings; django.setup(); "
        "print(settings.WEBHOOK_ALLOWED_NETWORKS)"
    )
    assert run_settings(code).stdout.strip().splitlines()[-1] == "[]"
    allowed = run_settings(code, WEBHOOK_ALLOWED_NETWORKS="10.20.0.15/32, fd00:20::/64")
    assert allowed.stdout.strip().splitlines()[-1] == "['10.20.0.15/32', 'fd00:20::/64']"
    assert "WEBHOOK_ALLOWED_NETWORKS: '10.0.0.0/33' is not a network" in refusal(
        WEBHOOK_ALLOWED_NETWORKS="10.0.0.0/33"
    )


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("169.254.169.254", "link-local"),
        ("[fe80::1]", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("[::]", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("[ff02::1]", "multicast"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("[fd12:3456::1]", "private"),
        ("100.64.0.1", "reserved"),  # carrier-grade NAT
        ("240.0.0.1", "reserved"),
        ("93.184.216.34", None),
        ("[2606:4700::1111]", None),
    ],
)
def test_each_kind_of_internal_address_is_named_and_a_public_one_passes(patient, host, kind):
    recipient = AlarmRecipient(patient=patient, address=f"http://{host}/", transport="webhook")
    if kind is None:
        recipient.full_clean()
        return
    with pytest.raises(ValidationError) as refused:
        recipient.full_clean()
    assert f"{host.strip('[]')} is a {kind} address" in refused.value.messages[0]
