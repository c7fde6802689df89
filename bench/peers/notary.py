"""Notary v1 (Debian's ``notary`` package) on loopback, for side-by-side benchmarks.

    with NotaryServer.start(workdir) as notary:
        pub = notary.client("publisher")
        pub.init(gun)
        pub.addhash(gun, "t0001", 527, "ab12…")     # one process per target: Notary has no bulk add
        pub.publish(gun)
        consumer = notary.client("consumer")
        mark = notary.mark()
        consumer.lookup(gun, "t0001")               # -> NotaryTarget(name, sha256, length, role)
        notary.requests(mark)                       # -> what notary-server served since mark

What runs (facts from /work/shared/PEERS.md):

- ``notary-signer`` (gRPC) and ``notary-server`` (HTTPS) on 127.0.0.1 at free ports, both with memory storage
  (the only backend the Debian build has: every start is empty), TLS everywhere with certificates made here
  with ``cryptography`` (one EC P-256 CA; leaf certs with SAN ``IP:127.0.0.1, DNS:localhost`` and
  serverAuth + clientAuth), mutual TLS between server and signer. The signer's at-rest passphrase comes from
  ``NOTARY_SIGNER_<ALIAS>``; client passphrases from ``NOTARY_*_PASSPHRASE``.
- Ready when ``GET /_notary_server/health`` answers 200 (that check includes the signer).
- Each :class:`NotaryClient` has its own trust dir and ``config.json`` (``notary -c``): a publisher holding keys
  and a consumer holding only the TOFU cache stay apart, and a consumer's cache can be dropped for cold lookups.
- Requests are counted from notary-server's JSON log: one ``"msg":"response completed"`` line per HTTP request,
  with the URI, status and bytes written. :meth:`NotaryServer.requests` first sends a uniquely named probe and
  waits for its line, so every request answered before is in the log; probes (and health checks made here)
  are never counted.
- :meth:`NotaryServer.stop` terminates, then kills, and always ``wait()``s: no ``<defunct>`` child is left.
  Servers are also stopped when the object is garbage-collected or at interpreter exit.

Nothing here imports tufoci: the module can benchmark or debug Notary on its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.logtail import LogTail
from tests.support.processes import free_port, stop_process

__all__ = [
    "NOTARY_BINARIES",
    "NotaryClient",
    "NotaryError",
    "NotaryRequest",
    "NotaryServer",
    "NotaryTarget",
    "ensure_notary_installed",
    "make_certificates",
    "make_delegation_key",
    "notary_available",
    "notary_version",
]

NOTARY_BINARIES = ("notary", "notary-server", "notary-signer")
_PACKAGE = "notary"
_SIGNER_ALIAS = "bench"
_START_TIMEOUT = 20.0
_RUN_TIMEOUT = 120.0
_PROBE_PREFIX = "/v2/_bench_sync/"
_HEALTH_PATH = "/_notary_server/health"

# Client passphrases (notary never prompts when these are set).
_PASSPHRASE = "bench-notary-passphrase"
CLIENT_ENV = {
    "NOTARY_ROOT_PASSPHRASE": _PASSPHRASE,
    "NOTARY_TARGETS_PASSPHRASE": _PASSPHRASE,
    "NOTARY_SNAPSHOT_PASSPHRASE": _PASSPHRASE,
    "NOTARY_DELEGATION_PASSPHRASE": _PASSPHRASE,
}


class NotaryError(RuntimeError):
    """Notary could not be installed or started, or a notary command failed."""


# ----------------------------------------------------------------------------- install


def notary_available() -> bool:
    return all(shutil.which(b) is not None for b in NOTARY_BINARIES)


def ensure_notary_installed(*, quiet: bool = True) -> None:
    """Install Debian's ``notary`` package when a binary is missing (root with apt-get only).

    Raises :class:`NotaryError` with a hint when it cannot.
    """
    if notary_available():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise NotaryError(f"notary is not installed; as root: apt-get install -y {_PACKAGE}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    out = subprocess.DEVNULL if quiet else None

    def install() -> int:
        return subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", _PACKAGE],
            env=env, stdout=out, stderr=out, check=False, timeout=600,
        ).returncode

    if install() != 0:  # stale or missing package lists: update once and retry
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=out, stderr=out, check=False, timeout=600)
        if install() != 0:
            raise NotaryError(f"apt-get install -y {_PACKAGE} failed")
    if not notary_available():
        raise NotaryError(f"{_PACKAGE} installed but {', '.join(NOTARY_BINARIES)} not all on PATH")


def notary_version() -> str | None:
    """``notary version`` as one line (e.g. ``Version: 0.7.0 …``), or the Debian package version."""
    try:
        out = subprocess.run(["notary", "version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    parts = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version:")]
    deb = None
    try:
        deb = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", _PACKAGE], capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    if parts and deb:
        return f"{parts[0]} (Debian {deb})"
    return parts[0] if parts else deb


# ----------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    signer_cert: Path
    signer_key: Path


def _ec_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def make_certificates(directory: Path, *, days: int = 30) -> Certificates:
    """A self-made CA and two leaf certs (server, signer), EC P-256, written under ``directory``.

    Leaves carry SAN ``IP:127.0.0.1, DNS:localhost`` and serverAuth + clientAuth, so each serves TLS and also
    authenticates as a client (notary-server → notary-signer mutual TLS).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=days)

    ca_key = _ec_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tufoci bench notary CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = _write(directory / "ca.crt", _cert_pem(ca_cert))

    def leaf(name: str) -> tuple[Path, Path]:
        key = _ec_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        return (
            _write(directory / f"{name}.crt", _cert_pem(cert)),
            _write(directory / f"{name}.key", _key_pem(key), 0o600),
        )

    server_cert, server_key = leaf("notary-server")
    signer_cert, signer_key = leaf("notary-signer")
    return Certificates(ca_path, server_cert, server_key, signer_cert, signer_key)


def make_delegation_key(directory: Path, name: str = "releases", *, days: int = 30) -> tuple[Path, Path]:
    """An EC P-256 key and its self-signed cert for ``notary delegation add`` → (key PEM, cert PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = _ec_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        _write(directory / f"{name}.key", _key_pem(key), 0o600),
        _write(directory / f"{name}.crt", _cert_pem(cert)),
    )


# ----------------------------------------------------------------------------- processes


def _process_state(pid: int) -> str | None:
    """The kernel's state letter (R, S, Z…) of ``pid``, or None when it is gone. Z = <defunct>."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


@dataclass(frozen=True)
class NotaryRequest:
    """One HTTP request as notary-server logged it (``"msg":"response completed"``)."""

    method: str
    uri: str
    status: int
    bytes_written: int
    duration_ms: float | None

    @property
    def is_ping(self) -> bool:
        return self.uri.rstrip("/") == "/v2"

    @property
    def path(self) -> str:
        return self.uri.split("?", 1)[0]


def parse_server_line(line: str) -> NotaryRequest | None:
    """A notary-server JSON log line → :class:`NotaryRequest`; None for anything but a completed response."""
    line = line.strip()
    if not line.startswith("{") or "response completed" not in line:
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if rec.get("msg") != "response completed":
        return None
    duration = rec.get("http.response.duration")
    duration_ms: float | None = None
    if isinstance(duration, str):
        duration_ms = _go_duration_ms(duration)
    return NotaryRequest(
        method=str(rec.get("http.request.method", "")),
        uri=str(rec.get("http.request.uri", "")),
        status=int(rec.get("http.response.status", 0) or 0),
        bytes_written=int(rec.get("http.response.written", 0) or 0),
        duration_ms=duration_ms,
    )


def _go_duration_ms(text: str) -> float | None:
    """``1.234567ms`` / ``812.5µs`` / ``1.2s`` → milliseconds."""
    for suffix, factor in (("ns", 1e-6), ("µs", 1e-3), ("us", 1e-3), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * factor
            except ValueError:
                return None
    return None


class NotaryServer:
    """notary-signer + notary-server on 127.0.0.1 with memory storage and TLS. Use :meth:`start`."""

    url: str
    host: str
    port: int
    signer_port: int
    base_dir: Path
    certs: Certificates
    server_log: Path
    signer_log: Path

    def __init__(
        self,
        base_dir: Path,
        certs: Certificates,
        signer: subprocess.Popen[bytes],
        server: subprocess.Popen[bytes],
        port: int,
        signer_port: int,
    ) -> None:
        self.base_dir = base_dir
        self.certs = certs
        self._signer = signer
        self._server = server
        self.port = port
        self.signer_port = signer_port
        self.host = f"127.0.0.1:{port}"
        self.url = f"https://{self.host}"
        self.server_log = base_dir / "notary-server.log"
        self.signer_log = base_dir / "notary-signer.log"
        self._log = LogTail(self.server_log)
        self._requests: list[NotaryRequest] = []
        self._ssl = ssl.create_default_context(cafile=str(certs.ca))
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._ssl)
        )
        # Stop order: server first (it holds the gRPC connection), then signer.
        self._finalizers = [
            weakref.finalize(self, stop_process, server),
            weakref.finalize(self, stop_process, signer),
        ]
        self._clients = 0

    # ------------------------------------------------------------------ start/stop

    @classmethod
    def start(
        cls, workdir: Path, *, timeout: float = _START_TIMEOUT, install: bool = True,
        server_extra: Mapping[str, Any] | None = None,
    ) -> NotaryServer:
        """Start signer and server under ``workdir/notary-<port>`` and wait for health; retry on a port race.

        ``server_extra`` is merged into notary-server's config (e.g. ``{"auth": {"type": "token", …}}``).
        """
        if install:
            ensure_notary_installed()
        elif not notary_available():
            raise NotaryError("notary, notary-server and notary-signer are needed (apt-get install notary)")
        last: NotaryError | None = None
        for _attempt in range(3):
            try:
                return cls._start_once(Path(workdir), timeout, server_extra or {})
            except NotaryError as exc:
                last = exc
                if "address already in use" not in str(exc):
                    raise
        assert last is not None
        raise last

    @classmethod
    def _start_once(cls, workdir: Path, timeout: float, server_extra: Mapping[str, Any]) -> NotaryServer:
        port, signer_port = free_port(), free_port()
        base = workdir / f"notary-{port}"
        base.mkdir(parents=True, exist_ok=True)
        certs = make_certificates(base / "certs")
        signer_config = {
            "server": {
                "grpc_addr": f"127.0.0.1:{signer_port}",
                "tls_cert_file": str(certs.signer_cert),
                "tls_key_file": str(certs.signer_key),
                "client_ca_file": str(certs.ca),
            },
            "logging": {"level": "info"},
            "storage": {"backend": "memory", "default_alias": _SIGNER_ALIAS},
        }
        server_config = {
            "server": {
                "http_addr": f"127.0.0.1:{port}",
                "tls_cert_file": str(certs.server_cert),
                "tls_key_file": str(certs.server_key),
            },
            "trust_service": {
                "type": "remote",
                "hostname": "127.0.0.1",
                "port": str(signer_port),
                "key_algorithm": "ecdsa",
                "tls_ca_file": str(certs.ca),
                "tls_client_cert": str(certs.server_cert),
                "tls_client_key": str(certs.server_key),
            },
            "logging": {"level": "info"},
            "storage": {"backend": "memory"},
            **server_extra,
        }
        (base / "signer.json").write_text(json.dumps(signer_config, indent=2) + "\n")
        (base / "server.json").write_text(json.dumps(server_config, indent=2) + "\n")
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env[f"NOTARY_SIGNER_{_SIGNER_ALIAS.upper()}"] = "bench-signer-at-rest-passphrase"

        def spawn(binary: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
            with open(log, "ab") as fh:
                return subprocess.Popen(
                    [binary, "-config", str(config), "-logf", "json"],
                    stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=base,
                    start_new_session=True,  # Ctrl-C in the terminal reaches us, not them; we stop them by PID
                )

        signer = spawn("notary-signer", base / "signer.json", base / "notary-signer.log")
        try:
            server = spawn("notary-server", base / "server.json", base / "notary-server.log")
        except BaseException:
            stop_process(signer)
            raise
        self = cls(base, certs, signer, server, port, signer_port)
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc, log in (
                ("notary-signer", self._signer, self.signer_log),
                ("notary-server", self._server, self.server_log),
            ):
                if proc.poll() is not None:
                    raise NotaryError(f"{name} exited with {proc.returncode} at start:\n{_tail(log)}")
            status, body = self._get(_HEALTH_PATH)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:200]!r}"
            time.sleep(0.05)
        raise NotaryError(
            f"notary-server at {self.url} not healthy after {timeout}s ({last})\n"
            f"--- server ---\n{_tail(self.server_log)}\n--- signer ---\n{_tail(self.signer_log)}"
        )

    def _get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with self._opener.open(urllib.request.Request(self.url + path), timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc).encode()

    @property
    def running(self) -> bool:
        """Both processes alive (a zombie counts as dead: state Z)."""
        return all(
            p.poll() is None and _process_state(p.pid) not in (None, "Z") for p in (self._server, self._signer)
        )

    @property
    def pids(self) -> tuple[int, int]:
        return self._server.pid, self._signer.pid

    def stop(self) -> None:
        """Stop both processes and reap them; idempotent."""
        for fin in self._finalizers:
            fin()

    def __enter__(self) -> NotaryServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients

    def client(self, name: str | None = None) -> NotaryClient:
        """A notary client with its own trust dir and config under this server's directory."""
        self._clients += 1
        name = name or f"client{self._clients}"
        return NotaryClient(self.base_dir / "clients" / name, self.url, self.certs.ca)

    # ------------------------------------------------------------------ request log

    def _read_new(self) -> set[str]:
        probes: set[str] = set()
        for line in self._log.new_lines():
            req = parse_server_line(line)
            if req is None:
                continue
            if req.uri.startswith(_PROBE_PREFIX):
                probes.add(req.uri)
            elif req.uri != _HEALTH_PATH:
                self._requests.append(req)
        return probes

    def _sync(self, timeout: float = 5.0) -> None:
        """Send a uniquely named probe and wait until its log line shows up."""
        marker = f"{_PROBE_PREFIX}{uuid.uuid4().hex}/_trust/tuf/timestamp.json"
        status, _ = self._get(marker)
        if status == 0:  # server gone: what is in the file is all there is
            self._read_new()
            return
        deadline = time.monotonic() + timeout
        while marker not in self._read_new():
            if time.monotonic() > deadline:
                raise NotaryError(f"notary-server log did not show the sync probe within {timeout}s")
            time.sleep(0.002)

    def requests(self, since: int = 0, *, sync: bool = True) -> list[NotaryRequest]:
        """Requests served since ``since`` (a :meth:`mark` value), without probes and health checks."""
        if sync and self.running:
            self._sync()
        else:
            self._read_new()
        return list(self._requests[since:])

    def mark(self) -> int:
        return len(self.requests())


# ----------------------------------------------------------------------------- client


@dataclass(frozen=True)
class NotaryTarget:
    """A signed target: name, sha256 (64 hex, no prefix), length, and the signing role when known."""

    name: str
    sha256: str
    length: int
    role: str | None = None


class NotaryClient:
    """``notary -c CONFIG`` with a private trust dir; passphrases from the environment, never prompted."""

    def __init__(self, base: Path, url: str, ca: Path) -> None:
        self.base = Path(base)
        self.trust_dir = self.base / "trust"
        self.trust_dir.mkdir(parents=True, exist_ok=True)
        self.config = self.base / "config.json"
        self.config.write_text(
            json.dumps({"trust_dir": str(self.trust_dir), "remote_server": {"url": url, "root_ca": str(ca)}}, indent=2)
            + "\n"
        )
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env.update(CLIENT_ENV, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", HOME=str(self.base))
        self.env = env

    # ------------------------------------------------------------------ plumbing

    def argv(self, *args: str) -> list[str]:
        """The full command line of ``notary ARGS`` for this client (for timing it as a process)."""
        return ["notary", "-c", str(self.config), *args]

    def run(self, *args: str, timeout: float = _RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        try:
            proc = subprocess.run(
                argv, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise NotaryError(f"{' '.join(argv)} timed out after {timeout}s") from exc
        if proc.returncode != 0:
            raise NotaryError(
                f"{' '.join(argv)} exited with {proc.returncode}\n{(proc.stderr or proc.stdout).strip()[-3000:]}"
            )
        return proc

    def metadata_dir(self, gun: str) -> Path:
        """Where the client caches ``GUN``'s metadata (``root.json``, ``targets.json``, …)."""
        return self.trust_dir / "tuf" / gun / "metadata"

    def drop_cache(self, gun: str | None = None) -> None:
        """Forget cached metadata (all GUNs, or one): the next lookup is cold (and trusts its root on first use)."""
        target = self.trust_dir / "tuf" if gun is None else self.trust_dir / "tuf" / gun
        shutil.rmtree(target, ignore_errors=True)

    # ------------------------------------------------------------------ commands

    def init(self, gun: str) -> None:
        """``notary init GUN -p``: new collection, published at once."""
        self.run("init", gun, "-p")

    def addhash(self, gun: str, name: str, length: int, sha256: str, *, role: str | None = None) -> None:
        """``notary addhash GUN NAME LENGTH --sha256 HEX [-r ROLE]``: stage one target (one process)."""
        args = ["addhash", gun, name, str(length), "--sha256", sha256]
        if role:
            args += ["-r", role]
        self.run(*args)

    def addhash_many(
        self, gun: str, targets: Iterable[tuple[str, int, str]], *, role: str | None = None
    ) -> int:
        """One ``addhash`` process per (name, length, sha256): Notary has no bulk add. Returns the count."""
        n = 0
        for name, length, sha256 in targets:
            self.addhash(gun, name, length, sha256, role=role)
            n += 1
        return n

    def publish(self, gun: str) -> None:
        self.run("publish", gun)

    def lookup(self, gun: str, name: str) -> NotaryTarget:
        """``notary lookup GUN NAME`` → the signed target (output: ``NAME sha256:HEX LENGTH``; hex kept)."""
        out = self.run("lookup", gun, name).stdout.split()
        if len(out) < 3:
            raise NotaryError(f"unexpected notary lookup output: {out!r}")
        return NotaryTarget(out[0], out[1].removeprefix("sha256:"), int(out[2]))

    def list(self, gun: str) -> list[NotaryTarget]:
        """``notary list GUN`` → every target (table: NAME DIGEST SIZE (BYTES) ROLE)."""
        rows: list[NotaryTarget] = []
        for line in self.run("list", gun).stdout.splitlines():
            cols = line.split()
            if len(cols) < 4 or cols[0] == "NAME" or set(cols[0]) <= {"-"}:
                continue
            try:
                rows.append(NotaryTarget(cols[0], cols[1], int(cols[2]), cols[3]))
            except ValueError:
                continue
        return rows

    def key_import(self, key_pem: Path, role: str) -> None:
        """``notary key import KEY.pem --role ROLE`` (encrypted with NOTARY_DELEGATION_PASSPHRASE)."""
        self.run("key", "import", str(key_pem), "--role", role)

    def delegation_add(
        self, gun: str, role: str, cert: Path, *, paths: Sequence[str] | None = None, publish: bool = True
    ) -> None:
        """``notary delegation add GUN ROLE CERT (--all-paths | --paths P…) [-p]``."""
        args = ["delegation", "add", gun, role, str(cert)]
        if paths is None:
            args.append("--all-paths")
        else:
            args += [f"--paths={p}" for p in paths]
        if publish:
            args.append("-p")
        self.run(*args)

    def rotate_snapshot_to_server(self, gun: str) -> None:
        """``notary key rotate GUN snapshot -r``: the server signs snapshots from now on."""
        self.run("key", "rotate", gun, "snapshot", "-r")


def summarize(requests: Sequence[NotaryRequest]) -> Mapping[str, Any]:
    """Count and bytes of a list of requests, with the ping (``GET /v2/``) apart."""
    return {
        "requests": len(requests),
        "pings": sum(1 for r in requests if r.is_ping),
        "bytes": sum(r.bytes_written for r in requests),
        "uris": [r.path for r in requests],
    }
