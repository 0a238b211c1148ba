"""The ``tierset`` commands that go through the gRPC API: settings, export and diff.

They are a client of the API like the REST gateway, never a way around it: every
command is one or a few calls to ``SettingsService`` (``AccountService`` to find a
retailer's account), authenticated as whoever the credentials name, so the server
checks and refuses exactly as it does for any other client. The import contract in
``.importlinter`` keeps it so: this package imports the client side only (grpcio, the
generated stubs, :mod:`tierset.client`), never the store, the services or the server.

Contract of every command here:

* where and as whom: ``--address`` / ``TIERSET_ADDRESS``, and the credentials that
  ``.data/demo-credentials.env`` exports (see :mod:`tierset.cli.api.connection`);
  a flag overrides its variable;
* output: human-readable by default (aligned tables), ``-o json`` for scripts; data on
  stdout, notes on stderr;
* failures: one line on stderr, ``error: CODE (REASON): message``, never a traceback;
* exit codes: 0 done, 1 refused or failed (the server said no, or could not be reached),
  2 bad usage (argparse's own, or a value that does not parse as its type).
"""


class UsageError(Exception):
    """Bad usage that argparse cannot see (a value that is not of its type, a missing
    credential): reported like argparse's own errors, exit code 2."""
