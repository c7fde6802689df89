"""The warm ``tufoci verify`` as a plain process: answer from the last full refresh's record (stdlib only).

A warm verify of an unchanged repository needs nothing python-tuf would compute:
when the registry serves the timestamp manifest the last full refresh verified
(same digest), every file it leads to is the same, and so is every answer
(docs/performance.md, "Revalidation"). ``Verifier`` knows this within one
process; the record (client/verified_record.py) carries it to the next.

This module answers only when all of it holds, for every reference of the call:
the home and its state pass the ownership checks; the pin covering each
reference is the pin the record was written under; the record is readable and
well formed, its earliest expiry is ahead, and the trusted cache still holds the
timestamp it names; every name was resolved by that refresh (and, for
``repo:tag@digest``, to that digest); the registry serves the recorded timestamp
manifest; and each tag check finds the signed digest. Anything else — another
digest, a registry error or challenge it does not answer (a token flow, a
credential helper), a redirect, a digest-only reference, a layout or HTTP
source, an option it does not know — returns None, and the full refresh runs as
always, which says what is wrong. So the fast path only ever prints what the
full path would print for success, through the same ``Outcome`` and renderer.

Registry URL, TLS context, timeouts, User-Agent, Accept and Basic credentials
come from tufoci/registry_http.py and tufoci/credentials.py, the code the full
client uses; the requests run under the command's ``--timeout`` budget, which
tufoci/entry.py opens around this and the full path alike.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from typing import TYPE_CHECKING

from tufoci.client.verified_record import cache_dir, file_sha256, read_record
from tufoci.layout_spec import MAX_MANIFEST_BYTES, MAX_METADATA_MANIFEST_BYTES, TIMESTAMP_TAG
from tufoci.ownership import home_problem
from tufoci.reference import parse_reference, parse_repository, target_name
from tufoci.registry_http import (
    MANIFEST_ACCEPT,
    USER_AGENT,
    basic_authorization,
    endpoint,
    parse_challenge,
)
from tufoci.tuf_compat import cached_file

if TYPE_CHECKING:
    from tufoci.registry_options import CredentialSource, RegistryOptions
    from tufoci.store.manifest_batch import Answer


class _FallThrough(Exception):
    """Something the fast path does not answer: the full refresh will."""


def parse_options(args: list[str]) -> dict | None:
    """``verify``'s arguments as the fast path knows them, or None for anything else (the full CLI's)."""
    options: dict = {"output": "text", "check_registry": True, "plain_http": None, "insecure": False,
                     "ca_file": None, "certs_dir": None, "timeout": None, "references": []}
    i = 0
    while i < len(args):
        arg, value = args[i], args[i + 1] if i + 1 < len(args) else None
        if arg in ("-o", "--output") and value in ("text", "json"):
            options["output"], i = value, i + 2
        elif arg == "--skip-registry-check":
            options["check_registry"], i = False, i + 1
        elif arg == "--plain-http":
            options["plain_http"], i = True, i + 1
        elif arg == "--insecure":
            options["insecure"], i = True, i + 1
        elif arg == "--ca-file" and value and os.path.isfile(value):
            options["ca_file"], i = value, i + 2
        elif arg == "--certs-dir" and value and os.path.isdir(value):
            options["certs_dir"], i = value, i + 2
        elif arg == "--timeout" and value is not None:
            options["timeout"], i = value, i + 2
        elif arg.startswith("-") or not arg:
            return None  # an option (or spelling: --output=json) only the full CLI knows
        else:
            options["references"].append(arg)
            i += 1
    return options if options["references"] else None


def fast_verify(args: list[str], home: str) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) of ``tufoci verify ARGS`` answered from the record; None: run the full path.

    Never raises: whatever goes wrong here is for the full path to find and report.
    """
    options = parse_options(args)
    if options is None:
        return None
    try:
        return _answer(options, home)
    except Exception:  # noqa: BLE001  (_FallThrough, a TufociError, a refused connection, a bug: the full path)
        return None


def _answer(options: dict, home: str) -> tuple[int, str, str]:
    from tufoci.client.trust_pins import is_http_source, pin_for_reference
    from tufoci.verify_output import Outcome, VerifiedImage, render_results

    if home_problem(home):
        raise _FallThrough
    pins = _pins(home)
    from tufoci.registry_config import TLSFlags
    from tufoci.registry_options import options_from_environment

    # the full path's own options (flags, certs.d, registries.conf, proxies, credentials, timeouts): the same
    # builder as the CLI's, so the same connections
    registry = options_from_environment(TLSFlags(options["plain_http"], options["insecure"], options["ca_file"]),
                                        os.environ, options["certs_dir"])
    now = time.time()
    records: dict[str, tuple] = {}  # scope -> (pin, its record)
    images, checks = [], []
    for text in options["references"]:
        reference = parse_reference(text)
        pin, scope = pin_for_reference(pins, reference)
        if reference.tag is None or scope.is_layout or is_http_source(pin.metadata):
            raise _FallThrough  # digest-only references, layouts and HTTP sources: the full path
        name = target_name(reference, scope)
        if pin.scope not in records:
            cache = cache_dir(home, pin)
            record = read_record(cache, pin)
            if record is None or now >= record["expires"]:
                raise _FallThrough
            # another process's refresh trusted a newer timestamp since: a registry serving the recorded
            # manifest again is a rollback for this machine, which only the full refresh can tell
            if file_sha256(cached_file(cache, "timestamp")) != record["trustedTimestamp"]:
                raise _FallThrough
            records[pin.scope] = (pin, record)
        info = records[pin.scope][1]["targets"].get(name)
        if info is None or (reference.digest and reference.digest != info["digest"]):
            raise _FallThrough
        image = VerifiedImage(str(reference), name, pin.scope, str(reference.repository), info["digest"],
                              info["length"], info["mediaType"])
        images.append(image)
        if options["check_registry"] and not reference.digest:
            checks.append((reference.repository, reference.tag, image.digest, MAX_MANIFEST_BYTES))
    metadata = [(parse_repository(pin.metadata), TIMESTAMP_TAG, record["timestampManifest"], MAX_METADATA_MANIFEST_BYTES)
                for pin, record in records.values()]
    _expect_all(metadata + checks, registry)
    out, err = io.StringIO(), io.StringIO()
    code = render_results([Outcome(i.reference, image=i).to_dict() for i in images], options["output"], out, err)
    return code, out.getvalue(), err.getvalue()


def _pins(home: str) -> list:
    """The trust pins in state.db, read as ``State.pins`` reads them (read-only: nothing is created here)."""
    from tufoci.errors import StateError
    from tufoci.state import read_pins_readonly

    path = os.path.join(home, "state.db")
    if not os.path.exists(path):
        raise _FallThrough
    try:
        return read_pins_readonly(path)
    except StateError as e:
        raise _FallThrough from e


def _expect_all(requests: list[tuple], registry: RegistryOptions) -> None:
    """GET each manifest (repository, reference, expected digest, size cap) and require the expected bytes.

    Per registry: the first request alone (it meets an auth challenge, if any), then the rest pipelined over
    kept-alive connections (tufoci/store/manifest_batch.py, the bare transport ``target add`` uses). A registry
    reached through a proxy is left to the full path.
    """
    from tufoci.store.manifest_batch import fetch_manifests, fetch_one

    by_host: dict[str, list[tuple]] = {}
    for repository, reference, digest, cap in requests:
        by_host.setdefault(repository.registry, []).append((repository.path, reference, digest, cap))
    for host, items in by_host.items():
        settings = registry.config.settings_for(host)
        url = f"{'http' if settings.plain_http else 'https'}://{settings.address}"
        if settings.proxies.for_url(url) is not None:
            raise _FallThrough
        endpoint_ = endpoint(url, tls=None if settings.plain_http else settings.ssl_context(),
                             read_timeout=registry.read_timeout, deadline=registry.deadline,
                             connect_timeout=registry.connect_timeout)
        host = settings.address  # credentials are those of the host connected to, as the full client's
        headers = {"Accept": MANIFEST_ACCEPT, "Accept-Encoding": "identity", "User-Agent": USER_AGENT}
        (path, reference, digest, cap), rest = items[0], items[1:]
        answer = fetch_one(endpoint_, path, reference, headers, max_bytes=cap)
        if answer.status == 401:
            headers["Authorization"] = _basic(registry.credentials, host, answer.headers.get("www-authenticate", ""))
            answer = fetch_one(endpoint_, path, reference, headers, max_bytes=cap)
        _expect(answer, digest)
        groups: dict[tuple[str, int], dict[str, str]] = {}
        for path, reference, digest, cap in rest:
            groups.setdefault((path, cap), {})[reference] = digest
        for (path, cap), expected in groups.items():
            if len(expected) == 1:  # one tag check: no threads to start
                ((reference, digest),) = expected.items()
                _expect(fetch_one(endpoint_, path, reference, headers, max_bytes=cap), digest)
                continue
            fetched, left = fetch_manifests(endpoint_, path, list(expected), headers, max_bytes=cap,
                                            connections=min(3, len(expected)))
            if left or any(fetched[r].digest != d for r, d in expected.items()):
                raise _FallThrough


def _expect(answer: Answer, digest: str) -> None:
    if answer.status != 200 or answer.body is None or _digest(answer.body) != digest:
        raise _FallThrough


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _basic(source: CredentialSource, registry: str, challenge: str) -> str:
    """The Authorization header the full client would answer ``challenge`` with: HTTP Basic and the same
    credentials. Any other flow (a token service), no credentials, or a credential helper: the full path."""
    scheme, _ = parse_challenge(challenge)
    if scheme != "basic":
        raise _FallThrough

    def no_helpers(name: str, registry: str) -> None:
        raise _FallThrough  # docker-credential-* helpers: a subprocess the full path runs

    credentials = source.lookup(registry, helper=no_helpers)
    if credentials is None:
        raise _FallThrough
    return basic_authorization(credentials)
