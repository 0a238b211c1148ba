"""The per-process read cache of resolved settings, kept coherent by PostgreSQL."""
