"""``python -m tierset.cli.main``: the same as the ``tierset`` command."""

from tierset.cli.main import main

main()
