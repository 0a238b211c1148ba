"""``make soak``: load and faults against a tierset of the soak's own; nothing may be lost.

The package: :mod:`.cluster` (PostgreSQL, two servers on one port, the gateway),
:mod:`.load` (writers and readers, gRPC and REST), :mod:`.watchers` (raw WatchSettings
streams and client views), :mod:`.faults`, :mod:`.run` (one run), :mod:`.checks` (the
verdicts, pure functions), :mod:`.report` (the table) and :mod:`.__main__` (the command).
:mod:`.inprocess` is the older single-server form the outage tests use in-process.
"""
