"""The ``tierset`` command: serve, dev, migrate, gateway, and the administration
commands that bootstrap accounts, users and credentials.
"""
