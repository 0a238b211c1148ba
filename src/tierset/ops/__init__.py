"""Running tierset: configuration, logs, metrics, worker processes, the embedded
PostgreSQL and the soak run.
"""
