"""A lease on one name in the state store: one holder at a time, across machines — the nightly's same-date guard.

``acquire`` creates the lease object exclusively (``storage.create_exclusive``: a hard link locally, a conditional PUT
``If-None-Match: *`` on S3), so of two runs that start at once exactly one gets it; the other is refused with an error
naming the holder and the expiry. The holder deletes it when done (``held``). A lease whose holder died without
releasing it (killed, OOM, a deleted pod) expires ``ttl_s`` after it was taken and is then taken over, safely: the
taker first creates ``<lease>.takeover-<id of the expired lease>`` exclusively — of several takers only one can — then
deletes the expired lease and creates its own, exclusively again (a run starting fresh in between wins, and the taker
is refused). A lease that does not parse is treated as expired.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from pipelines import storage
from pipelines.errors import LeaseHeldError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lease:
    uri: str
    holder: str  # user@host:pid
    host: str
    pid: int
    started: str  # ISO 8601, UTC
    expires: str
    token: str  # unique per acquisition: only its holder releases it
    took_over: str | None = None  # the expired lease it replaced ("<holder>, expired <time>"), if any


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return str(os.getuid())


def _new(uri: str, ttl_s: float) -> Lease:
    host, pid, now = socket.gethostname(), os.getpid(), _now()
    return Lease(uri=uri, holder=f"{_user()}@{host}:{pid}", host=host, pid=pid,
                 started=now.isoformat(timespec="seconds"),
                 expires=(now + timedelta(seconds=ttl_s)).isoformat(timespec="seconds"), token=uuid.uuid4().hex)


def _document(lease: Lease) -> bytes:
    return json.dumps({k: v for k, v in asdict(lease).items() if k not in ("uri", "took_over")}, indent=1).encode()


def _parse(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


def _expired(doc) -> bool:
    try:
        return datetime.fromisoformat(doc["expires"]) <= _now()
    except (TypeError, KeyError, ValueError):
        return True  # unreadable: nobody can be holding it


def acquire(uri: str, *, ttl_s: float, what: str) -> Lease:
    """Take the lease at ``uri`` for ``ttl_s`` seconds, or raise :class:`LeaseHeldError` naming its holder."""
    mine = _new(uri, ttl_s)
    for _ in range(3):  # the lease may be released between our create and our read: try again
        if storage.create_exclusive(uri, _document(mine)):
            return mine
        try:
            raw = storage.read_bytes(uri)
        except FileNotFoundError:
            continue
        doc = _parse(raw)
        if isinstance(doc, dict) and not _expired(doc):
            raise LeaseHeldError(
                f"{what} is already running: the lease {storage.describe(uri)} is held by {doc.get('holder')} since "
                f"{doc.get('started')}, until {doc.get('expires')}. Wait for that run to finish; if it is dead, "
                "delete the lease (or wait until it expires) and run again")
        return _take_over(uri, mine, doc, raw, what)
    raise LeaseHeldError(f"{what}: the lease {storage.describe(uri)} keeps changing hands; run again")


def _take_over(uri: str, mine: Lease, doc, raw: bytes, what: str) -> Lease:
    old = doc.get("token") if isinstance(doc, dict) and doc.get("token") else hashlib.sha256(raw).hexdigest()[:32]
    stale = (f"{doc.get('holder')}, expired {doc.get('expires')}" if isinstance(doc, dict)
             else "an unreadable lease")
    if not storage.create_exclusive(f"{uri}.takeover-{old}", _document(mine)):
        raise LeaseHeldError(f"{what}: another run is taking over the expired lease {storage.describe(uri)} "
                             f"({stale}) right now")
    storage.delete(uri)
    if not storage.create_exclusive(uri, _document(mine)):
        now = storage.read_json(uri) or {}
        raise LeaseHeldError(f"{what} is already running: the lease {storage.describe(uri)} was taken by "
                             f"{now.get('holder')} (until {now.get('expires')}) while its expired one was replaced")
    log.warning("%s: took over the expired lease %s (%s): its run did not release it (killed or crashed?)",
                what, storage.describe(uri), stale)
    return Lease(**{**asdict(mine), "took_over": stale})


def release(lease: Lease) -> None:
    """Delete the lease if it is still ``lease`` (a lease taken over after it expired is the new holder's)."""
    doc = storage.read_json(lease.uri)
    if isinstance(doc, dict) and doc.get("token") == lease.token:
        storage.delete(lease.uri)
    else:
        log.warning("lease %s is no longer ours (now %s): left in place", storage.describe(lease.uri),
                    doc.get("holder") if isinstance(doc, dict) else None)


@contextlib.contextmanager
def held(uri: str, *, ttl_s: float, what: str):
    """``acquire`` … ``release``, also when the body raises."""
    lease = acquire(uri, ttl_s=ttl_s, what=what)
    try:
        yield lease
    finally:
        release(lease)
