"""Where a webhook may go, and the POST itself (docs/alarms.md, "Webhook addresses").

Any staff member may set a webhook URL, and the worker POSTs the alarm there with the
patient's name, MRN and ward. Left open, a URL could aim the server at itself or at the
hospital's internal services (server-side request forgery: ``http://127.0.0.1:6379/``, the
cloud metadata service at ``169.254.169.254``), and the error it records would tell a
port scan "refused" from "HTTP 404". So:

- A webhook may only reach a public address: not loopback, link-local, private (IPv4 RFC 1918,
  IPv6 unique-local), multicast, unspecified or otherwise reserved, unless the address is in
  ``WEBHOOK_ALLOWED_NETWORKS`` (an on-site pager gateway on the hospital's network).
- :func:`check_url` refuses such an address when the recipient is saved (``AlarmRecipient``'s
  validation: the limits page and the admin), for a literal IP and a host name alike.
- :func:`post` checks again when it sends, after resolving the host then (DNS may have changed
  since, on purpose too: DNS rebinding), and connects to the very address it checked, with the
  host name in the Host header and, over https, as the name the certificate must carry (SNI).
  ``urllib`` would resolve the name again on its own, follow redirects to anywhere and go
  through ``*_proxy`` from the environment, so ``http.client`` is used directly: no redirect is
  followed (a 3xx is a failure naming its Location), and no proxy is used.
- Failures are short categories ("connection refused", "timed out", "HTTP 404"), which is what
  whoever set the URL needs to fix it and no more.
"""

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookError(Exception):
    """A webhook that was not delivered; the message is short enough for ``last_error``."""


class WebhookRefused(WebhookError):
    """The webhook's host is, or resolves to, an address webhooks may not reach."""


class WebhookUnresolved(WebhookError):
    """The webhook's host name does not resolve (now)."""


def address_kind(ip: IPAddress) -> str | None:
    """Why webhooks may not reach ``ip`` by default ("loopback", "private", ...); None for a
    public address."""
    # Python's flags overlap (loopback is also private), so the most telling comes first;
    # is_global is false for what the others leave out (100.64.0.0/10, 192.0.0.0/24, ...), and
    # true for multicast, hence both
    checks = [
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("reserved", not ip.is_global),
    ]
    return next((kind for kind, matches in checks if matches), None)


def refusal(ip: IPAddress) -> str | None:
    """The kind of ``ip`` when webhooks may not reach it (see :func:`address_kind`), None when
    they may: a public address, or one in ``WEBHOOK_ALLOWED_NETWORKS``."""
    kind = address_kind(ip)
    if kind is None:
        return None
    for network in settings.WEBHOOK_ALLOWED_NETWORKS:
        if ip in ipaddress.ip_network(network, strict=False):
            return None
    return kind


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to now. Raises :class:`WebhookRefused` when any of them
    is one webhooks may not reach (one bad address is enough for a connection to land there),
    :class:`WebhookUnresolved` when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookUnresolved(f"could not resolve {host}") from None
    try:
        ipaddress.ip_address(host)
        names = f"{host} is"
    except ValueError:
        names = f"{host} resolves to"
    addresses = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0])
        # ::ffff:127.0.0.1 is 127.0.0.1 to a dual-stack socket: judge (and reach) it as IPv4
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        kind = refusal(ip)
        if kind is not None:
            raise WebhookRefused(f"{names} a {kind} address, which webhooks may not reach")
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def split_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL; :class:`WebhookError` for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("A webhook address must be an http(s) URL")
    try:
        port = parts.port
    except ValueError:  # past 65535 (Django's URLValidator lets it through)
        port = 0
    if port == 0:
        raise WebhookError("The port of a webhook address must be 1 to 65535")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_url(url: str) -> None:
    """Raise :class:`WebhookRefused` when the URL's host is, or now resolves to, an address
    webhooks may not reach, :class:`WebhookError` for a URL that is not one. A name that does
    not resolve passes: DNS may be down, or the name not published yet, and :func:`post`
    checks again at every send."""
    _, host, port = split_url(url)
    try:
        resolve(host, port)
    except WebhookUnresolved:
        pass


def open_socket(addresses: list[IPAddress], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of ``addresses`` (all checked) that answers."""
    error: OSError | None = None
    for ip in addresses:
        try:
            return socket.create_connection((str(ip), port), timeout=timeout)
        except OSError as exc:  # e.g. an IPv6 address on a host without an IPv6 route
            error = exc
    raise error or OSError("no address to connect to")


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to addresses already checked, never to what the host name resolves
    to at connect time; the Host header still names the host."""

    def __init__(self, host: str, port: int, addresses: list[IPAddress], timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self) -> None:
        self.sock = open_socket(self.addresses, self.port, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As :class:`PinnedHTTPConnection`, over TLS: the certificate must be valid for the host
    name in the URL, which is also the name sent in SNI."""

    def __init__(self, host: str, port: int, addresses: list[IPAddress], timeout: float):
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.addresses = addresses

    def connect(self) -> None:
        sock = open_socket(self.addresses, self.port, self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    """POST ``body`` to ``url``; return on a 2xx answer, raise :class:`WebhookError` (a short
    reason) otherwise, :class:`WebhookRefused` when the host resolves to an address webhooks
    may not reach."""
    scheme, host, port = split_url(url)
    addresses = resolve(host, port)
    connection_class = PinnedHTTPSConnection if scheme == "https" else PinnedHTTPConnection
    connection = connection_class(host, port, addresses, timeout)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        status, location = response.status, response.getheader("Location", "")
    # the category only: enough for whoever set the URL, nothing like the exception's text
    except ssl.SSLCertVerificationError:
        raise WebhookError(f"TLS certificate not valid for {host}") from None
    except ssl.SSLError:
        raise WebhookError("TLS handshake failed") from None
    except ConnectionRefusedError:
        raise WebhookError("connection refused") from None
    except TimeoutError:
        raise WebhookError("timed out") from None
    except (ConnectionError, http.client.HTTPException):
        raise WebhookError("connection closed without an HTTP answer") from None
    except OSError:
        raise WebhookError("network error (unreachable)") from None
    finally:
        connection.close()
    if 300 <= status < 400:
        # following it would let the receiver send the alarm to any address, past the check
        raise WebhookError(f"HTTP {status} redirect to {location[:200]!r}, not followed")
    if not 200 <= status < 300:
        raise WebhookError(f"HTTP {status}")
