"""A live view: one scope's watched settings, kept in memory by WatchSettings.

Invariants:

* Reads (``get_int``, ``get_bool``, ``get_str``, ``get_json``, ``get``) touch memory only:
  no I/O, no await, safe from any thread. The values are one dict that is replaced, never
  mutated, so a reader sees a whole revision, never half of one.
* The view's state is always the state at ``revision``: a SNAPSHOT replaces it, each
  EVENTS message applies exactly one revision, in order; a message at or below the
  current revision is a duplicate and is skipped.
* After a disconnect it reconnects with jittered backoff and resumes with
  ``start_revision = revision``, so it misses nothing and applies nothing twice. When the
  server says that revision is compacted (or in its future: a restored database), it starts
  again without one and the fresh snapshot replaces everything (a re-list); the callbacks
  see the difference as events.
* A refusal at start-up (bad scope, no permission, bad credential) is raised by
  ``client.view``; once running, every failure is retried with backoff (a revoked token
  may be replaced, a server restored) and ``last_error`` says what the last one was.
* With a last-known-good file, every change is written to it atomically (a temporary file
  in the same directory, fsync, ``os.replace``), so a crash leaves the old file or the new
  one. At start-up, if the server cannot be reached, the view serves the file's values and
  says so (``from_file``) until the server's first snapshot replaces them. A file written
  for another target, scope or key selection is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from tierset.client.backoff import Backoff
from tierset.client.errors import TiersetError
from tierset.client.model import Event, Scope, Setting, WatchMessage
from tierset.v1.error_reason_pb2 import ErrorReason

if TYPE_CHECKING:
    from tierset.client.api import Client

log = logging.getLogger("tierset.client")

_FILE_FORMAT = 1

# Refusals that no retry can cure: at start-up they are raised to the caller.
_PERMANENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

# The ErrorInfo reasons the view acts on, named by the proto's catalogue.
_RELIST = frozenset(
    ErrorReason.Name(r) for r in (ErrorReason.REVISION_COMPACTED, ErrorReason.FUTURE_REVISION)
)
_OVERFLOW = ErrorReason.Name(ErrorReason.WATCH_OVERFLOW)

ChangeCallback = Callable[[list[Event], int], Any]


class View:
    """Made by ``await client.view(...)``; see the module docstring for its guarantees."""

    def __init__(
        self,
        client: Client,
        scope: Scope,
        *,
        keys: Sequence[str] = (),
        prefix: str = "",
        last_known_good: str | Path | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if bool(keys) == bool(prefix):
            raise ValueError("a view watches either keys or a prefix: give exactly one")
        if scope.is_global:
            raise ValueError("a view watches an account or a retailer, not GLOBAL")
        self._client = client
        self.scope = scope
        self.keys = tuple(keys)
        self.prefix = prefix
        self._path = Path(last_known_good) if last_known_good is not None else None
        self._backoff = backoff or Backoff(base_seconds=0.2, cap_seconds=5.0)
        self._values: dict[str, Setting] = {}
        self.revision = 0
        self.connected = False
        self.from_file = False
        self.last_error: TiersetError | None = None
        self.reconnects = 0
        self._synced = False  # holds a server snapshot (not just the file)
        self._heard_at: float | None = None
        self._file_saved_at: float | None = None
        self._file_tried = False
        self._callbacks: list[ChangeCallback] = []
        self._ready = asyncio.Event()
        self._fatal: TiersetError | None = None
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- reads from memory -----------------------------------------------------------------

    def setting(self, key: str) -> Setting | None:
        """The key's effective setting, or None when no level sets it."""
        return self._values.get(key)

    def get(self, key: str, default: Any = None) -> Any:
        """The key's value whatever its type, or `default`."""
        setting = self._values.get(key)
        return default if setting is None else setting.value

    def _typed(self, key: str, default: Any, types: tuple[str, ...], name: str) -> Any:
        setting = self._values.get(key)
        if setting is None:
            return default
        if setting.type not in types:
            raise TypeError(f"{key} is a {setting.type} setting, not {name}")
        return setting.value

    def get_int(self, key: str, default: int | None = None) -> int | None:
        return self._typed(key, default, ("INTEGER",), "an INTEGER")

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        return self._typed(key, default, ("BOOLEAN",), "a BOOLEAN")

    def get_str(self, key: str, default: str | None = None) -> str | None:
        return self._typed(key, default, ("STRING", "LOB"), "a STRING")

    def get_json(self, key: str, default: Any = None) -> Any:
        return self._typed(key, default, ("JSON",), "a JSON")

    def items(self) -> dict[str, Any]:
        """Every watched key that is set, with its value (a copy)."""
        return {key: setting.value for key, setting in self._values.items()}

    @property
    def age_seconds(self) -> float:
        """Seconds since the server last told this view anything (an event or progress);
        serving from the file: since the file was written; nothing yet: infinity."""
        if self._heard_at is not None:
            return time.monotonic() - self._heard_at
        if self._file_saved_at is not None:
            return max(0.0, time.time() - self._file_saved_at)
        return math.inf

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Calls ``callback(events, revision)`` after each change is applied (on the event
        loop's thread; an exception is logged, never ends the view). Returns an undo."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    # -- life cycle ------------------------------------------------------------------------

    async def start(self, wait_seconds: float) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="tierset-view"))
        if self._path is not None:
            self._tasks.append(asyncio.create_task(self._write_file_loop(), name="tierset-lkg"))
        try:
            async with asyncio.timeout(wait_seconds):
                await self._ready.wait()
        except TimeoutError:
            await self.close()
            cause = f" (last error: {self.last_error})" if self.last_error else ""
            raise TiersetError(
                grpc.StatusCode.UNAVAILABLE,
                f"no snapshot from {self._client.target} within {wait_seconds:g} s and no "
                f"usable last-known-good file{cause}",
            ) from None
        if self._fatal is not None:
            await self.close()
            raise self._fatal

    async def close(self) -> None:
        """Stops watching; the last values stay readable."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.connected = False
        if self._path is not None and self._dirty.is_set():
            await self._save()  # a change applied just before close is not lost

    async def __aenter__(self) -> View:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        while True:
            resume = self.revision if self._synced else None
            try:
                async for message in self._client.watch(
                    self.scope, keys=self.keys, prefix=self.prefix, start_revision=resume
                ):
                    if not self.connected:
                        self.connected = True
                        self._backoff.reset()
                    self._apply(message)
                error = TiersetError(grpc.StatusCode.UNAVAILABLE, "the watch stream ended")
            except TiersetError as refused:
                error = refused
            self.connected = False
            self.last_error = error
            self.reconnects += 1
            if error.reason in _RELIST:
                # Re-list: the next stream starts with a snapshot that replaces everything.
                log.warning("tierset view: %s; reading a fresh snapshot", error)
                self._synced = False
                continue
            if error.reason == _OVERFLOW:
                continue  # resume at once from the last revision applied
            if not self._ready.is_set():
                if error.code in _PERMANENT:
                    self._fatal = error
                    self._ready.set()
                    return
                await self._load_file()
            log.warning("tierset view: %s; reconnecting", error)
            await asyncio.sleep(self._backoff.next_delay())

    def _apply(self, message: WatchMessage) -> None:
        self._heard_at = time.monotonic()
        old = self._values
        if message.kind == "SNAPSHOT":
            new = {setting.key: setting for setting in message.settings}
            events = [
                Event(key, new.get(key), old.get(key))
                for key in sorted(old.keys() | new.keys())
                if new.get(key) != old.get(key)
            ]
            self._synced = True
            self.from_file = False
        elif message.kind == "EVENTS":
            if message.revision <= self.revision:
                return  # already applied (a replay overlapping what we hold)
            new = dict(old)
            for event in message.events:
                if event.setting is None:
                    new.pop(event.key, None)
                else:
                    new[event.key] = event.setting
            events = message.events
        else:  # PROGRESS
            self.revision = max(self.revision, message.revision)
            return
        self._values = new
        self.revision = message.revision
        self._ready.set()
        if events or message.kind == "SNAPSHOT":
            self._dirty.set()
        if events:
            for callback in list(self._callbacks):
                try:
                    callback(events, self.revision)
                except Exception:
                    log.exception("tierset view: an on_change callback failed")

    # -- the last-known-good file ----------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        return {
            "target": self._client.target,
            "scope": self.scope.label(),
            "keys": list(self.keys),
            "prefix": self.prefix,
        }

    async def _load_file(self) -> None:
        if self._path is None or self._file_tried:
            return
        self._file_tried = True  # once: the file does not change while we wait
        try:
            data = await asyncio.to_thread(_read_json, self._path)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            log.warning("tierset view: ignoring last-known-good file %s: %s", self._path, error)
            return
        if data.get("format") != _FILE_FORMAT or data.get("identity") != self._identity():
            log.warning("tierset view: %s was written for another view; ignored", self._path)
            return
        self._values = {s["key"]: Setting.from_json(s) for s in data["settings"]}
        self.revision = int(data["revision"])
        self._file_saved_at = float(data["saved_at"])
        self.from_file = True
        self._ready.set()

    async def _write_file_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await self._save()

    async def _save(self) -> None:
        """Writes the current state to the file (it is one revision: the dict is never
        mutated); a failure is logged, and the next change tries again."""
        assert self._path is not None
        self._dirty.clear()
        document = {
            "format": _FILE_FORMAT,
            "identity": self._identity(),
            "revision": self.revision,
            "saved_at": time.time(),
            "settings": [s.to_json() for s in self._values.values()],
        }
        try:
            await asyncio.to_thread(_write_atomically, self._path, document)
        except OSError as error:
            log.warning("tierset view: cannot write %s: %s", self._path, error)


def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _write_atomically(path: Path, document: dict[str, Any]) -> None:
    """Replaces `path` with `document` so that a reader (or a crash) sees old or new."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
