"""One soak child: ``python -m tierset.cli.soak.server [grpc|gateway]``.

The same server a TIERSET_PROCESSES worker runs (the environment's configuration, the port
shared by SO_REUSEPORT, migrations left to whoever started it), but with no supervisor: the
soak kills one of two such processes and expects the other to keep serving, where the
supervisor would stop the whole group. ``gateway`` runs the REST gateway as ``tierset
gateway`` does. Either is stopped (SIGTERM) when its parent, the soak, dies: asked for here,
in the child, because a ``preexec_fn`` in the soak (a process full of gRPC threads) forks
unsafely.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from tierset.api.server import serve
from tierset.gateway import serve as gateway
from tierset.ops import logs
from tierset.ops.config import Config
from tierset.ops.workers import die_with_parent, run_loop


def main() -> None:
    """Serves until SIGTERM: gRPC on the port shared with the other server, or the gateway."""
    die_with_parent(os.getppid())
    if sys.argv[1:] == ["gateway"]:
        config = Config.from_env()
        logs.configure(config)
        run_loop(gateway.serve(config))
        return
    # processes > 1 is what turns SO_REUSEPORT on; this process is one of them.
    config = dataclasses.replace(Config.from_env(), processes=2, migrate_on_start=False)
    logs.configure(config)
    dsn = config.database_url.reveal() if config.database_url else None
    run_loop(serve(config, dsn))


if __name__ == "__main__":
    main()
