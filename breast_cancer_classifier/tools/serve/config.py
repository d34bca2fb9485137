"""The settings of ``bcc serve``: where it listens, where results go, its limits, TLS."""

import ipaddress
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import SettingsError

AE_TITLE_PATTERN = re.compile(r"^[ -~]{1,16}$")  # PS3.5 AE VR: 16 printable ASCII characters


@dataclass(frozen=True)
class Destination:
    """The DICOM node that receives the result objects (``--destination AE@HOST:PORT``)."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text):
        """``"PACS@10.0.0.5:104"`` -> Destination; a malformed value raises SettingsError."""
        match = re.fullmatch(r"(?P<ae>[^@]+)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d+)",
                             str(text or "").strip())
        if not match:
            raise SettingsError(f"--destination {text!r}: expected AE@HOST:PORT, e.g. "
                                "ORTHANC@127.0.0.1:4242")
        port = int(match["port"])
        if not 1 <= port <= 65535:
            raise SettingsError(f"--destination {text!r}: port {port} is not 1-65535")
        return cls(check_ae_title(match["ae"], "--destination"), match["host"].strip("[]"),
                   port)

    def __str__(self):
        return f"{self.ae_title}@{self.host}:{self.port}"


def check_ae_title(title, flag):
    """An AE title of 1-16 printable ASCII characters, not only spaces (PS3.5 6.2)."""
    if not AE_TITLE_PATTERN.match(title or "") or not title.strip() or "\\" in title:
        raise SettingsError(f"{flag} {title!r}: an AE title is 1 to 16 printable ASCII "
                            "characters, not all spaces, without a backslash")
    return title.strip()


@dataclass(frozen=True)
class ServeConfig:
    """Everything the service needs besides its processor.

    ``study_quiet_seconds``: a study with its four views is complete once nothing has
    arrived for it for this long. ``study_timeout_seconds``: a study that still lacks a view
    this long after its first instance arrived is failed (a failure report is sent).
    ``max_queue``: studies received, complete or running at once; an instance of a further
    study is answered 0xA700 (out of resources). ``allow_callers``: the calling AE titles
    accepted (empty: any). ``http_port``: ``/healthz`` and ``/metrics`` on 127.0.0.1
    (None: off; 0: a free port). The retry and poll times are not command-line flags.
    """

    work_dir: Path
    destination: Destination
    ae_title: str = "BCC"
    host: str = "127.0.0.1"
    port: int = 11112
    allow_callers: tuple = ()
    study_quiet_seconds: float = 30.0
    study_timeout_seconds: float = 3600.0
    max_queue: int = 50
    http_port: int = None
    tls_cert: Path = None
    tls_key: Path = None
    tls_ca: Path = None
    retry_first_seconds: float = 1.0  # the first wait after a failed send; doubles each time
    retry_max_seconds: float = 60.0  # ... up to this
    poll_seconds: float = 0.5  # how often the worker looks for due studies
    max_attempts: int = 3  # processing runs interrupted (crash, kill) before a study fails
    network_timeout_seconds: float = 30.0  # association and DIMSE timeouts

    def __post_init__(self):
        check_ae_title(self.ae_title, "--ae-title")
        for caller in self.allow_callers:
            check_ae_title(caller, "--allow-caller")
        if self.study_timeout_seconds <= self.study_quiet_seconds:
            raise SettingsError(
                f"--study-timeout-seconds {self.study_timeout_seconds:g} must be longer than "
                f"--study-quiet-seconds {self.study_quiet_seconds:g}")
        if self.study_quiet_seconds < 0:
            raise SettingsError("--study-quiet-seconds must be 0 or more")
        for flag, port in (("--port", self.port), ("--http-port", self.http_port)):
            if port is not None and not 0 <= port <= 65535:
                raise SettingsError(f"{flag} {port}: a port is 0-65535 (0: any free port)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("--tls-cert and --tls-key go together (the server's "
                                "certificate and its private key)")
        if self.tls_ca is not None and self.tls_cert is None:
            raise SettingsError("--tls-ca (require client certificates) needs --tls-cert and "
                                "--tls-key")

    @property
    def loopback_only(self):
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def server_ssl_context(cert, key, ca=None):
    """The TLS context of the DICOM listener, or None without a certificate.

    TLS 1.2 or later. With ``ca`` (a PEM bundle) every caller must present a certificate
    signed by it (mutual TLS).
    """
    if cert is None:
        return None
    for flag, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)):
        if path is not None and not Path(path).is_file():
            raise SettingsError(f"{flag} {path}: file not found")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
            context.verify_mode = ssl.CERT_REQUIRED
    except (ssl.SSLError, OSError) as err:
        raise SettingsError(f"--tls-cert {cert} / --tls-key {key}"
                            f"{f' / --tls-ca {ca}' if ca else ''}: cannot be loaded ({err}); "
                            "give PEM files, the key unencrypted") from err
    return context
