"""A real OCI registry (CNCF distribution, Debian's ``docker-registry``) for tests.

Integration tests and benchmarks run against this instead of mocks so that the
HTTP behaviour (status codes, digests, content negotiation, auth) is the real
one. Every server listens on 127.0.0.1 only, on a free port, with its own
storage directory, config and log under the given ``workdir``.

The registry writes one Apache "combined" access-log line per request; this
module parses them so a test can count the requests a piece of code made
(see :meth:`RegistryServer.mark` and :meth:`RegistryServer.request_count`).
Requests made by this module itself (readiness probes, log sync probes) carry
a private User-Agent and are left out of every count.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.logtail import LogTail
from tests.support.processes import free_port, stop_process

__all__ = [
    "REGISTRY_BINARY",
    "AccessLogLine",
    "RegistryServer",
    "RegistryStartError",
    "registry_available",
    "write_htpasswd",
]

REGISTRY_BINARY = "docker-registry"
"""Name of the binary shipped by Debian's ``docker-registry`` package."""

#: User-Agent of requests issued by this module; such lines are never counted.
SUPPORT_USER_AGENT = "tufoci-test-support/1"

# Never send loopback traffic through an HTTP(S)_PROXY from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_START_TIMEOUT = 10.0

# 127.0.0.1 - - [21/Nov/2026:21:00:23 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
_ACCESS_RE = re.compile(
    r"^(?P<remote>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<method>[A-Z]+) (?P<path>\S+) (?P<proto>[^"]+)" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"\s*$'
)


def registry_available() -> bool:
    """True when the registry binary is installed, so tests can skip otherwise."""
    return shutil.which(REGISTRY_BINARY) is not None


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    """Write an htpasswd file (bcrypt, the only scheme distribution accepts).

    Cost 4 (the minimum) keeps each authenticated request cheap; the default
    cost of 10+ would add tens of milliseconds to every request and skew
    timings in benchmarks.
    """
    with warnings.catch_warnings():
        # crypt: deprecated since 3.11 (gone in 3.13) but the stdlib's only bcrypt.
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        lines = [
            f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}"
            for user, password in users.items()
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class RegistryStartError(RuntimeError):
    """The registry process did not come up; the message carries its log tail."""


@dataclass(frozen=True)
class AccessLogLine:
    """One HTTP request as the registry logged it."""

    method: str
    path: str
    status: int
    size: int
    user: str | None
    user_agent: str

    def as_tuple(self) -> tuple[str, str, int]:
        """(method, path, status): the part most assertions need."""
        return (self.method, self.path, self.status)


def parse_access_line(line: str) -> AccessLogLine | None:
    """Parse one combined-log line; None for anything else (app log lines)."""
    m = _ACCESS_RE.match(line)
    if m is None:
        return None
    size = m["size"]
    user = m["user"]
    return AccessLogLine(
        method=m["method"],
        path=m["path"],
        status=int(m["status"]),
        size=0 if size == "-" else int(size),
        user=None if user == "-" else user,
        user_agent=m["agent"],
    )


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` into ``base`` recursively, so callers can override one key."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


class RegistryServer:
    """A running ``docker-registry serve`` on 127.0.0.1 with its own storage.

    Use :meth:`start` (not the constructor) and stop it with :meth:`stop` or a
    ``with`` block. A server that is never stopped is stopped when the object
    is garbage-collected or at interpreter exit, so a failing test cannot leak
    the process (keep a reference for as long as you need the registry).
    """

    host: str
    """``127.0.0.1:PORT``, the form used in image references."""
    port: int
    url: str
    """``http://127.0.0.1:PORT``"""
    root: Path
    """Storage root directory (``storage.filesystem.rootdirectory``)."""
    base_dir: Path
    config_path: Path
    log_path: Path
    credentials: tuple[str, str] | None
    """Default (user, password) used by :meth:`request`, if any."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        base_dir: Path,
        credentials: tuple[str, str] | None,
    ) -> None:
        self._proc = proc
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        self.base_dir = base_dir
        self.root = base_dir / "storage"
        self.config_path = base_dir / "config.yml"
        self.log_path = base_dir / "registry.log"
        self.credentials = credentials
        self._log = LogTail(self.log_path)
        self._lines: list[AccessLogLine] = []
        # Runs on stop(), when the object is garbage-collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, stop_process, proc)

    # ------------------------------------------------------------------ start/stop

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        htpasswd: Path | None = None,
        credentials: tuple[str, str] | None = None,
        extra_config: Mapping[str, Any] | None = None,
        timeout: float = _START_TIMEOUT,
    ) -> RegistryServer:
        """Start a registry under ``workdir`` and wait until ``/v2/`` answers.

        ``htpasswd`` turns on basic auth (see :func:`write_htpasswd`);
        ``credentials`` are then used by :meth:`request`. ``extra_config`` is
        deep-merged into the generated config (e.g. ``{"storage": {"delete":
        {"enabled": False}}}``). Retries on a new port if the chosen one was
        taken in the meantime.
        """
        if not registry_available():
            raise RegistryStartError(f"{REGISTRY_BINARY!r} not found on PATH (run scripts/install-system-deps)")
        last_error: RegistryStartError | None = None
        for _attempt in range(3):
            try:
                return cls._start_once(workdir, htpasswd, credentials, extra_config, timeout)
            except RegistryStartError as exc:
                last_error = exc
                if "address already in use" not in str(exc):
                    raise
        assert last_error is not None
        raise last_error

    @classmethod
    def _start_once(
        cls,
        workdir: Path,
        htpasswd: Path | None,
        credentials: tuple[str, str] | None,
        extra_config: Mapping[str, Any] | None,
        timeout: float,
    ) -> RegistryServer:
        port = free_port()
        base_dir = Path(workdir) / f"registry-{port}"
        base_dir.mkdir(parents=True, exist_ok=True)
        storage = base_dir / "storage"
        storage.mkdir(exist_ok=True)
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
        }
        if htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "tufoci-test", "path": str(Path(htpasswd).resolve())}}
        if extra_config:
            _deep_merge(config, extra_config)
        config_path = base_dir / "config.yml"
        # JSON is valid YAML, and keeps this module free of a YAML dependency.
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return cls._spawn(config_path, port, base_dir, credentials, timeout, log_mode="wb")

    @classmethod
    def _spawn(
        cls,
        config_path: Path,
        port: int,
        base_dir: Path,
        credentials: tuple[str, str] | None,
        timeout: float,
        *,
        log_mode: str,
    ) -> RegistryServer:
        """Start the registry process for an existing config and wait until it answers."""
        log_path = base_dir / "registry.log"
        with open(log_path, log_mode) as log:
            proc = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=base_dir,
                start_new_session=True,  # Ctrl-C in pytest must not kill it before stop()
            )
        server = cls(proc, port, base_dir, credentials)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                server.stop()
                raise RegistryStartError(
                    f"registry exited with {proc.returncode} before serving {server.url}/v2/:\n{server.log_tail()}"
                )
            status = server._probe("/v2/")
            if status in (200, 401):  # 401: up, but auth is on
                return server
            if time.monotonic() > deadline:
                server.stop()
                raise RegistryStartError(
                    f"registry did not answer {server.url}/v2/ within {timeout:.0f}s:\n{server.log_tail()}"
                )
            time.sleep(0.05)

    def restart(self, timeout: float = _START_TIMEOUT) -> RegistryServer:
        """Stop, then serve the same storage on the same port again (an outage, for tests).

        Returns the new server object; this one stays stopped.
        """
        self.stop()
        return self._spawn(self.config_path, self.port, self.base_dir, self.credentials, timeout, log_mode="ab")

    def stop(self) -> None:
        """Stop the process (terminate, then kill) and reap it; idempotent."""
        self._finalizer()

    @property
    def running(self) -> bool:
        """True while the registry process is alive."""
        return self._proc.poll() is None

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RegistryServer {self.host} {state} root={self.root}>"

    # ------------------------------------------------------------------ HTTP

    def _probe(self, path: str) -> int | None:
        """GET ``path`` with the private User-Agent; status, or None if unreachable."""
        req = urllib.request.Request(self.url + path, headers={"User-Agent": SUPPORT_USER_AGENT})
        try:
            with _OPENER.open(req, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return None

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        credentials: tuple[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """Plain HTTP call to the registry for assertions: (status, headers, body).

        Does not raise on 4xx/5xx so tests can assert on error statuses.
        Header names in the result are lower-cased. These requests are counted
        in the access log like any other client's.
        """
        hdrs = dict(headers or {})
        creds = credentials or self.credentials
        if creds is not None and "Authorization" not in hdrs:
            token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            hdrs["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return int(resp.status), {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as err:
            body = err.read()
            return int(err.code), {k.lower(): v for k, v in err.headers.items()}, body

    def get_manifest(
        self,
        repo: str,
        reference: str,
        *,
        accept: str = "application/vnd.oci.image.manifest.v1+json",
    ) -> tuple[bytes, str]:
        """Fetch a manifest's exact bytes and its ``Docker-Content-Digest`` header.

        The digest of a manifest is the sha256 of these bytes; comparing them
        across registries checks that a copy kept digests.
        """
        status, headers, body = self.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
        if status != 200:
            raise RuntimeError(f"GET manifest {repo}:{reference} from {self.host}: HTTP {status}: {body[:500]!r}")
        return body, headers.get("docker-content-digest", "")

    def tags(self, repo: str) -> list[str]:
        """Tags of ``repo`` via ``/v2/<repo>/tags/list`` ([] when the repo is unknown)."""
        status, _headers, body = self.request("GET", f"/v2/{repo}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise RuntimeError(f"GET tags of {repo} from {self.host}: HTTP {status}: {body[:500]!r}")
        return list(json.loads(body).get("tags") or [])

    # ------------------------------------------------------------------ access log

    def log_text(self) -> str:
        """The whole process log (access log and app log interleaved)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        """Last ``lines`` lines of the log, for error messages."""
        try:
            text = self.log_text()
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _read_new_lines(self) -> set[str]:
        """Parse only what was appended since the last read (logs can get long).

        Returns the paths of this module's own probes seen in the new part.
        """
        own: set[str] = set()
        for line in self._log.new_lines():
            parsed = parse_access_line(line)
            if parsed is None:
                continue
            if parsed.user_agent == SUPPORT_USER_AGENT:
                own.add(parsed.path)
            else:
                self._lines.append(parsed)
        return own

    def _sync_log(self, timeout: float = 5.0) -> None:
        """Make sure requests already answered are in the log file.

        The registry writes the access-log line after the response has been
        sent, so a client can see its answer before the line exists. We send a
        uniquely-named probe and wait for its line; lines of requests answered
        before it have been written by then in practice.
        """
        marker = f"/v2/_tufoci_support_sync/{uuid.uuid4().hex}/tags/list"
        if self._probe(marker) is None:
            self._read_new_lines()  # server gone: whatever is in the file is all there is
            return
        deadline = time.monotonic() + timeout
        while marker not in self._read_new_lines():
            if time.monotonic() > deadline:
                raise RuntimeError(f"access log of {self.host} did not show the sync probe within {timeout}s")
            time.sleep(0.002)

    def access_log_lines(self, since: int = 0, *, sync: bool = True) -> list[AccessLogLine]:
        """Requests served so far (oldest first), without this module's own probes.

        ``since`` is a value from :meth:`mark`. With ``sync`` (default) the
        call first waits until every already-answered request is logged.
        """
        if sync and self.running:
            self._sync_log()
        else:
            self._read_new_lines()
        return list(self._lines[since:])

    def request_count(self, since: int = 0, *, sync: bool = True) -> int:
        """Number of HTTP requests served since ``since`` (a :meth:`mark` value)."""
        return len(self.access_log_lines(since, sync=sync))

    def mark(self) -> int:
        """Current request count; pass it as ``since`` to count what follows."""
        return self.request_count()
