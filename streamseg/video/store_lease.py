"""The writer lease of a store (`lease.json`): one writer at a time, fenced by a token.

A writer creates the lease atomically when it opens a store for writing (a complete temp file
hard-linked into place: no other writer ever sees it half written), renews its expiry at each
commit and deletes it when it finishes or closes. Readers ignore it.

A lease whose holder is gone is taken over with a new, larger token: on the same host when its
pid is dead, or is now another process (the pid was reused: the lease records the holder's
start time from /proc/<pid>/stat, where there is one), or is this very process (an earlier
writer object of ours that was dropped), on
another host only after its expiry (a pid there cannot be checked). Taking over is a replace,
not a lock: two writers taking over the same stale lease at once may both believe they hold it
for a moment, so every commit checks that the lease still holds the writer's token (fencing)
and a writer that lost it stops without committing.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from streamseg.errors import UserError
from streamseg.video.store_commit import sync_dir

LEASE_FILE = "lease.json"
# Renewed at each commit (every few seconds in a run): a holder silent this long on another
# host is presumed gone.
LEASE_SECONDS = 600.0
# Leases this process holds (token -> store): given back when the process exits, so that a
# run stopped by an error or Ctrl-C leaves none behind (a SIGKILL does; it is taken over).
_HELD: dict[int, Path] = {}


@dataclass(frozen=True)
class Lease:
    """The content of lease.json."""

    host: str
    pid: int
    started: str  # ISO time (UTC) the holder took the lease
    token: int  # fencing token: larger than that of every lease it replaced
    expires: float  # Unix time; renewed at each commit
    program: str  # what holds it, for the message ("streamseg run")
    # The holder's start time (clock ticks after boot, /proc/<pid>/stat field 22); None where
    # there is no /proc. Tells a reused pid from the holder.
    pid_start: int | None = None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} since {self.started} ({self.program})"


def _program() -> str:
    """ "streamseg <command>" when run from the command line, else "streamseg"."""
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    is_word = command.isidentifier() and "streamseg" in sys.argv[0]
    return f"streamseg {command}" if is_word else "streamseg"


def read_lease(store: Path) -> Lease | None:
    """The lease of `store`; None if there is none. A malformed one (only a writer killed
    while taking over could leave it: the file is always written whole) counts as stale."""
    try:
        data = json.loads((store / LEASE_FILE).read_text())
        return Lease(
            host=str(data["host"]),
            pid=int(data["pid"]),
            started=str(data["started"]),
            token=int(data["token"]),
            expires=float(data["expires"]),
            program=str(data.get("program", "streamseg")),
            pid_start=None if data.get("pid_start") is None else int(data["pid_start"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Lease("?", -1, "?", 0, 0.0, "?")


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot), None if unknown (no /proc, or no
    such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count after its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def _holder_alive(lease: Lease) -> bool:
    """True if the lease's process still runs on this host (and is the same process)."""
    if not _pid_alive(lease.pid):
        return False
    if lease.pid_start is None:
        return True  # recorded without /proc: the pid is all there is to go on
    started = process_start(lease.pid)
    return started is None or started == lease.pid_start


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def is_stale(lease: Lease, now: float | None = None) -> bool:
    """True if the holder of `lease` is gone (see the module docstring)."""
    if lease.host == socket.gethostname():
        return lease.pid == os.getpid() or not _holder_alive(lease)
    return (time.time() if now is None else now) >= lease.expires


def in_use_error(store: Path, lease: Lease) -> UserError:
    return UserError(
        f"{store}: in use by {lease.describe()}; wait for it, or remove "
        f"{store / LEASE_FILE} if that process is gone"
    )


def check_free(store: Path) -> None:
    """Raise the "in use" error if a live writer holds `store` (before deleting it)."""
    lease = read_lease(store)
    if lease is not None and not is_stale(lease):
        raise in_use_error(store, lease)


def _write_temp(store: Path, lease: Lease) -> Path:
    temp = store / f".{LEASE_FILE}.{uuid.uuid4().hex}.tmp"
    with open(temp, "w") as handle:
        handle.write(json.dumps(asdict(lease)))
        handle.flush()
        os.fsync(handle.fileno())
    return temp


def acquire(store: Path) -> Lease:
    """Take the lease of `store` (an existing folder), or take over a stale one.

    Raises:
        UserError: a live writer holds it (the message names it).
    """
    host, pid = socket.gethostname(), os.getpid()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = read_lease(store)
    # Wall-clock nanoseconds, and above the lease replaced: increasing across takeovers.
    token = max(time.time_ns(), (old.token + 1) if old else 0)
    expires = time.time() + LEASE_SECONDS
    lease = Lease(host, pid, started, token, expires, _program(), process_start(pid))
    temp = _write_temp(store, lease)
    try:
        try:
            os.link(temp, store / LEASE_FILE)  # atomic: fails if a lease exists
            _HELD[lease.token] = store
            return lease
        except FileExistsError:
            pass
        current = read_lease(store)
        if current is not None and not is_stale(current):
            raise in_use_error(store, current)
        if current is not None and current.token >= token:
            lease = replace(lease, token=current.token + 1)
            temp.unlink(missing_ok=True)
            temp = _write_temp(store, lease)
        os.replace(temp, store / LEASE_FILE)
        sync_dir(store)
        holder = read_lease(store)
        if holder != lease and holder is not None:
            raise in_use_error(store, holder)  # another writer took it over at the same time
        _HELD[lease.token] = store
        return lease
    finally:
        temp.unlink(missing_ok=True)


def check_held(store: Path, lease: Lease) -> None:
    """Fencing: raise unless `store`'s lease is still `lease`'s token (nothing is changed)."""
    current = read_lease(store)
    if current is not None and current.token == lease.token:
        return
    who = current.describe() if current is not None else "another writer (the lease is gone)"
    raise UserError(
        f"{store}: the writer lease was taken over by {who}; this run stops without committing"
    )


def renew(store: Path, lease: Lease) -> Lease:
    """Push the expiry of a held lease (call right after `check_held`). Not fsynced: after a
    power cut the holder is gone anyway, and an older expiry only hands it over sooner."""
    renewed = Lease(**{**asdict(lease), "expires": time.time() + LEASE_SECONDS})
    temp = store / f".{LEASE_FILE}.{uuid.uuid4().hex}.tmp"
    temp.write_text(json.dumps(asdict(renewed)))
    os.replace(temp, store / LEASE_FILE)
    return renewed


def release(store: Path, token: int) -> None:
    """Delete the lease of `store` if it still holds `token` (a later holder keeps its own)."""
    _HELD.pop(token, None)
    current = read_lease(store)
    if current is not None and current.token == token:
        (store / LEASE_FILE).unlink(missing_ok=True)


@atexit.register
def _release_all() -> None:
    for token, store in list(_HELD.items()):
        try:
            release(store, token)
        except OSError:
            pass  # the store is gone, or unwritable: nothing to give back
