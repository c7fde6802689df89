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

import io
import os
import time

from tufoci.client.verified_record import cache_dir, file_sha256, read_record
from tufoci.layout_constants import MAX_MANIFEST_BYTES, MAX_METADATA_MANIFEST_BYTES, TIMESTAMP_TAG
from tufoci.ownership import home_problem
from tufoci.reference import parse_reference, parse_repository, target_name
from tufoci.registry_http import (
    MANIFEST_ACCEPT,
    USER_AGENT,
    basic_authorization,
    endpoint,
    parse_challenge,
)
from tufoci.sha256 import sha256_digest
from tufoci.tuf_compat import cached_file

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    from tufoci.registry_options import CredentialSource, RegistryOptions
    from tufoci.store.manifest_batch import Answer, Endpoint

CONNECTIONS = 3  # as target add's batch (tufoci/store/manifest_batch.py): more do not help on 2 cores
PER_CONNECTION = 40  # fewer requests than this on each: not worth a thread



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

    Per registry, the timestamp manifest and the tags are asked for together, pipelined on kept-alive
    connections (tufoci/store/manifest_batch.py, the bare transport ``target add`` uses): one round trip for
    a single verify. A challenge (401) is answered once, with the full path's credentials, and everything
    asked again. A registry reached through a proxy is left to the full path.
    """
    by_host: dict[str, list[tuple]] = {}
    for repository, reference, digest, cap in requests:
        by_host.setdefault(repository.registry, []).append((repository.path, reference, cap, digest))
    for host, asked in by_host.items():
        items = list(dict.fromkeys(asked))  # a reference given twice is asked for once
        settings = registry.config.settings_for(host)
        url = f"{'http' if settings.plain_http else 'https'}://{settings.address}"
        if settings.proxies.for_url(url) is not None:
            raise _FallThrough
        endpoint_ = endpoint(url, tls=None if settings.plain_http else settings.ssl_context(),
                             read_timeout=registry.read_timeout, deadline=registry.deadline,
                             connect_timeout=registry.connect_timeout)
        headers = {"Accept": MANIFEST_ACCEPT, "Accept-Encoding": "identity", "User-Agent": USER_AGENT}
        answers = _fetch(endpoint_, items, headers)
        if answers and answers[0].status == 401:
            # credentials are those of the host connected to, as the full client's
            headers["Authorization"] = _basic(registry.credentials, settings.address,
                                              answers[0].headers.get("www-authenticate", ""))
            answers = _fetch(endpoint_, items, headers)
        if len(answers) != len(items):
            raise _FallThrough  # an answer the pipeline could not read: the full path asks again
        for answer, (_, _, _, digest) in zip(answers, items, strict=True):
            if answer.status != 200 or answer.body is None or sha256_digest(answer.body) != digest:
                raise _FallThrough


def _fetch(endpoint_: Endpoint, items: list[tuple], headers: dict[str, str]) -> list[Answer]:
    """The answers to ``items`` (path, reference, cap, …) in order, over one connection per ``PER_CONNECTION``
    of them (at most ``CONNECTIONS``, each on its own thread); shorter than ``items`` when one stopped early.

    Threads through ``_thread``, not ``threading`` (~1 ms of a warm verify's start-up for what two locks do
    here); each connection's deadline is in ``endpoint_``, so a thread never outlives the command's budget."""
    from tufoci.store.manifest_batch import fetch_in_order

    requests = [item[:3] for item in items]
    count = min(CONNECTIONS, -(-len(requests) // PER_CONNECTION))
    if count == 1:  # a single verify: no thread to start
        return fetch_in_order(endpoint_, requests, headers)
    import _thread

    size = -(-len(requests) // count)
    chunks = [requests[i:i + size] for i in range(0, len(requests), size)]
    results: list[list[Answer]] = [[] for _ in chunks]

    def run(index: int, done: _thread.LockType | None = None) -> None:
        try:
            results[index] = fetch_in_order(endpoint_, chunks[index], headers)
        except Exception:  # noqa: BLE001  (a short list: the caller falls through)
            pass
        finally:
            if done is not None:
                done.release()

    finished = []
    for index in range(1, len(chunks)):
        done = _thread.allocate_lock()
        done.acquire()
        _thread.start_new_thread(run, (index, done))
        finished.append(done)
    run(0)
    for done in finished:
        done.acquire()  # released by its thread when it returns
    answers: list[Answer] = []
    for chunk, result in zip(chunks, results, strict=True):
        answers += result
        if len(result) != len(chunk):
            break
    return answers


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
