"""The champion alias of a registered model: who may move it, how it moves, and its history.

**Reading.** The champion is read from the registered model's alias map (``get_registered_model(name).aliases``):
an alias that is not in the map means "no champion"; any error (server down, 5xx, permission denied) is an error.
MLflow's own ``get_model_version_by_alias`` is not used for this: for an unset alias both its sqlite store and its
REST server answer ``INVALID_PARAMETER_VALUE`` ("Registered model alias … not found"), the same code as a
malformed request, so an error code cannot tell "none" from "broken".

**Moving (compare-and-set).** MLflow has no conditional alias write. Its one atomic exclusive create is a
registered model's name (a second ``create_registered_model`` of a name fails with ``RESOURCE_ALREADY_EXISTS``,
on sqlite and behind a server alike), so every champion change (the gate, a forced promotion, a rollback) holds a
*lease*: the registered model ``<name>.champion-lease``, created on entry and deleted on exit. Under the lease the
mover re-reads the champion; only if it is still the version it judged against does it append the history entry,
move the alias and re-read it to verify. A promoter that finds the champion moved lost the race and moves nothing.
Re-read + verify alone cannot exclude two winners (A verifies before B, whose pre-check preceded A's write,
writes), the lease can. A lease older than ``LEASE_TTL_S`` (its holder crashed) is deleted by the next mover; the
one case not excluded is two movers breaking the same stale lease at the same moment.

**History.** ``i2i.champion_history`` is a JSON list of ``{version, previous, at, kind, reason, by, id}``,
oldest first. MLflow 3.x validates registered-model tag values up to 100 000 characters, but its SQL schema
stores them in ``registered_model_tags.value VARCHAR(5000)`` (only ``model_version_tags.value`` was widened to
TEXT): sqlite ignores the length, PostgreSQL and MySQL refuse a longer value. So no history tag exceeds
``TAG_LIMIT`` = 5000 characters: when the next entry would not fit, the current list moves to an archive tag
``i2i.champion_history.NNNN`` (written first) and the head starts again; reasons are cut to ``REASON_LIMIT``.
Nothing is dropped; a crash between the two writes leaves entries twice, which the reader folds (by ``id``). The
entry is written *before* the alias moves (a failed history write moves nothing); if the alias move then fails,
the head is put back.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from pipelines.errors import RegistryError

log = logging.getLogger(__name__)
HISTORY_TAG = "i2i.champion_history"
TAG_LIMIT = 5000  # registered_model_tags.value is VARCHAR(5000) in MLflow's SQL schema
REASON_LIMIT = 1000  # characters of a reason kept in the history (the version's promotion.reason has it whole)
LEASE_SUFFIX = ".champion-lease"
LEASE_TTL_S = 120.0  # a lease this old is a crashed mover's: the critical section takes seconds
LEASE_WAIT_S = 150.0  # how long a mover waits for a held lease (longer than the TTL: a stale one gets broken)
LEASE_TTL_ENV = "I2I_CHAMPION_LEASE_TTL_S"  # overrides LEASE_TTL_S (the wait stays TTL + 30 s)


def lease_ttl_s() -> float:
    """The age after which a champion lease is a crashed mover's (``$I2I_CHAMPION_LEASE_TTL_S``, else 120 s)."""
    raw = os.environ.get(LEASE_TTL_ENV)
    try:
        ttl = float(raw) if raw else LEASE_TTL_S
    except ValueError:
        raise RegistryError(f"{LEASE_TTL_ENV}={raw!r} is not a number of seconds") from None
    if ttl <= 0:
        raise RegistryError(f"{LEASE_TTL_ENV}={raw!r} must be > 0")
    return ttl


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"


def _code(err: BaseException) -> str | None:
    return getattr(err, "error_code", None)


def champion_version(c, name: str, alias: str) -> str | None:
    """The version ``alias`` points at; None only when the registered model has no such alias. Errors raise."""
    version = c.get_registered_model(name).aliases.get(alias)
    return None if version is None else str(version)


# --- lease --------------------------------------------------------------------------------------------------------
def lease_name(name: str) -> str:
    return f"{name}{LEASE_SUFFIX}"


@contextmanager
def lease(c, name: str, purpose: str, wait_s: float | None = None) -> Iterator[None]:
    """Hold the exclusive right to change ``name``'s champion (see the module docstring)."""
    held_name, token = lease_name(name), uuid.uuid4().hex
    holder = f"{whoami()}@{socket.gethostname()} pid {os.getpid()}"
    ttl = lease_ttl_s()
    deadline = time.monotonic() + (wait_s if wait_s is not None else ttl + LEASE_WAIT_S - LEASE_TTL_S)
    while True:
        try:
            c.create_registered_model(held_name, tags={"i2i.lease.token": token, "i2i.lease.holder": holder,
                                                       "i2i.lease.purpose": purpose, "i2i.lease.at": utc_now()},
                                      description=f"lease: {holder} is changing the champion of {name}")
            break
        except Exception as err:  # noqa: BLE001 - only "already exists" means held; anything else is an error
            if _code(err) != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held = c.get_registered_model(held_name)
        except Exception as err:  # noqa: BLE001
            if _code(err) == "RESOURCE_DOES_NOT_EXIST":
                continue  # released between our two calls
            raise
        age = time.time() - held.creation_timestamp / 1000
        if age > ttl:
            log.warning("breaking the stale champion lease of %s (held by %s for %.0f s)", name,
                        held.tags.get("i2i.lease.holder"), age)
            _delete(c, held_name)
            continue
        if time.monotonic() > deadline:
            raise RegistryError(
                f"the champion of {name} is being changed by {held.tags.get('i2i.lease.holder', '?')} "
                f"({held.tags.get('i2i.lease.purpose', '?')}, since {held.tags.get('i2i.lease.at', '?')}): try "
                f"again; if no promoter is running, delete the registered model '{held_name}'")
        time.sleep(random.uniform(0.1, 0.4))
    try:
        yield
    finally:
        try:
            if c.get_registered_model(held_name).tags.get("i2i.lease.token") == token:
                c.delete_registered_model(held_name)
        except Exception as err:  # noqa: BLE001 - it expires after the TTL
            log.warning("could not release the champion lease '%s' (%s); it expires after %.0f s", held_name, err,
                        ttl)


def _delete(c, registered_name: str) -> None:
    try:
        c.delete_registered_model(registered_name)
    except Exception as err:  # noqa: BLE001
        if _code(err) != "RESOURCE_DOES_NOT_EXIST":
            raise


# --- history ------------------------------------------------------------------------------------------------------
def _dumps(entries: list[dict]) -> str:
    return json.dumps(entries, separators=(",", ":"))


def _archive_keys(tags: dict[str, str]) -> list[str]:
    keys = [k for k in tags if k.startswith(HISTORY_TAG + ".") and k[len(HISTORY_TAG) + 1:].isdigit()]
    return sorted(keys, key=lambda k: int(k[len(HISTORY_TAG) + 1:]))


def read_history(tags: dict[str, str]) -> list[dict] | None:
    """Every history entry, oldest first (archives, then the head); None when the model has no history tag."""
    if HISTORY_TAG not in tags:
        return None
    entries, seen = [], set()
    for key in [*_archive_keys(tags), HISTORY_TAG]:
        for e in json.loads(tags[key] or "[]"):
            if e.get("id") not in seen:  # an entry archived and left in the head by a crash: once
                entries.append(e)
            if e.get("id"):
                seen.add(e["id"])
    return entries


def history_entry(version: str, previous: str | None, reason: str, kind: str, at: str | None = None) -> dict:
    """One champion change. ``kind``: promoted (the gate), forced, rollback."""
    if len(reason) > REASON_LIMIT:
        reason = reason[:REASON_LIMIT - 1] + "…"
    return {"version": str(version), "previous": previous, "at": at or utc_now(), "reason": reason, "kind": kind,
            "by": whoami(), "id": uuid.uuid4().hex[:12]}


def _append(c, name: str, entry: dict) -> tuple[str, str | None]:
    """Append ``entry`` (see the module docstring); returns the head's new value and its old one (to undo)."""
    tags = c.get_registered_model(name).tags
    old = tags.get(HISTORY_TAG)
    head = json.loads(old or "[]")
    if head and len(_dumps(head + [entry])) > TAG_LIMIT:
        archive = f"{HISTORY_TAG}.{len(_archive_keys(tags)) + 1:04d}"
        c.set_registered_model_tag(name, archive, _dumps(head))
        log.info("%s: %d champion history entries moved to the tag %s", name, len(head), archive)
        head = []
    value = _dumps(head + [entry])
    c.set_registered_model_tag(name, HISTORY_TAG, value)
    return value, old


# --- the move -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Move:
    moved: bool
    previous: str | None  # the champion found under the lease
    champion: str | None  # the champion after the move (``previous`` when it did not move)


def move(c, name: str, alias: str, version: str, entry: dict, *, expected: str | None, check: bool = True) -> Move:
    """Under the lease: if the champion still is ``expected`` (not checked with ``check`` False), record ``entry``
    and point ``alias`` at ``version``."""
    with lease(c, name, f"{entry['kind']} v{version}"):
        current = champion_version(c, name, alias)
        if check and current != expected:
            return Move(False, current, current)
        entry = {**entry, "previous": current}
        _, old = _append(c, name, entry)
        try:
            c.set_registered_model_alias(name, alias, str(version))
        except Exception:
            try:  # put the head back: the change did not happen
                if old is None:
                    c.delete_registered_model_tag(name, HISTORY_TAG)
                else:
                    c.set_registered_model_tag(name, HISTORY_TAG, old)
            except Exception as undo:  # noqa: BLE001
                log.error("%s: the alias did not move, and its history entry could not be withdrawn: %s", name, undo)
            raise
        after = champion_version(c, name, alias)
        if after != str(version):
            raise RegistryError(f"{name}: '{alias}' is v{after} right after it was set to v{version} under the lease; "
                                "another process changed it without the lease")
    return Move(True, current, str(version))
