"""A process holding a tierset view, for bench/run.py's write -> view latency.

Usage: view_probe.py TARGET TOKEN RETAILER_ID KEY. Prints ``ready`` once the view holds
its snapshot, then one line ``VALUE MONOTONIC_NS`` each time KEY changes, the moment the
view applied it (CLOCK_MONOTONIC is one clock for every process of the machine).
"""

from __future__ import annotations

import asyncio
import sys
import time

from tierset.client import ApiToken, Client, Event, Scope


async def main(target: str, token: str, retailer_id: int, key: str) -> None:
    async with Client(target, ApiToken(token)) as client:
        view = await client.view(Scope.retailer(retailer_id), keys=[key])

        def changed(events: list[Event], revision: int) -> None:
            now = time.monotonic_ns()
            print(view.get_int(key), now, flush=True)

        view.on_change(changed)
        print("ready", flush=True)
        await asyncio.Event().wait()  # until the bench terminates us


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
