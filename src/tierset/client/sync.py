"""The synchronous facade, for programs without an event loop.

:class:`SyncClient` runs one event loop on a daemon thread of its own and the async
:class:`~tierset.client.Client` on it; each method submits the coroutine there and blocks
for its result. Its views are the same :class:`~tierset.client.view.View` objects: their
getters read memory and are safe from any thread; ``on_change`` callbacks run on the
facade's loop thread.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tierset.client.api import Client
from tierset.client.credentials import Credentials
from tierset.client.model import Change, Deleted, Read, Scope, Setting, Written
from tierset.client.view import View

T = TypeVar("T")


class SyncClient:
    """``Client``'s methods, blocking. Use ``with SyncClient(...) as client:``."""

    def __init__(self, target: str, credentials: Credentials, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tierset-client", daemon=True
        )
        self._thread.start()
        self._views: list[View] = []

        async def make() -> Client:  # the channel must be made on the loop that uses it
            return Client(target, credentials, **options)

        self._client = self._run(make())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops every view, closes the channel and ends the loop thread."""
        if not self._thread.is_alive():
            return
        for view in self._views:
            self._run(view.close())
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def get(self, scope: Scope, keys: Sequence[str], **options: Any) -> Read:
        return self._run(self._client.get(scope, keys, **options))

    def put(self, scope: Scope, key: str, value: Any, **options: Any) -> Written:
        return self._run(self._client.put(scope, key, value, **options))

    def delete(self, scope: Scope, key: str, **options: Any) -> Deleted:
        return self._run(self._client.delete(scope, key, **options))

    def list(self, scope: Scope, **options: Any) -> builtins.list[Setting]:
        return self._run(self._client.list(scope, **options))

    def history(self, scope: Scope | None = None, **options: Any) -> builtins.list[Change]:
        return self._run(self._client.history(scope, **options))

    def view(
        self,
        scope: Scope,
        *,
        keys: Sequence[str] = (),
        prefix: str = "",
        last_known_good: str | Path | None = None,
        wait_seconds: float = 10.0,
    ) -> View:
        """As ``Client.view``; the view keeps itself current on the facade's thread."""
        view = self._run(
            self._client.view(
                scope,
                keys=keys,
                prefix=prefix,
                last_known_good=last_known_good,
                wait_seconds=wait_seconds,
            )
        )
        self._views.append(view)
        return view
