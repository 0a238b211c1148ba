"""tierset: typed, layered settings over gRPC and REST, stored in PostgreSQL."""

__version__ = "0.1.0"
