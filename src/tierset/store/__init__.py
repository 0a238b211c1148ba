"""PostgreSQL: the named SQL beside its migrations, the code that runs it, the change
listener.
"""
