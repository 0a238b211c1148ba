"""``python -m tierset.cli``: the same as the ``tierset`` command."""

from tierset.cli.main import main

main()
