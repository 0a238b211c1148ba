"""The REST gateway: the documented HTTP/JSON paths, translated to the gRPC API and back.

It decides nothing: the gRPC server owns every rule and the database. The
gateway only maps JSON to protobuf, a gRPC status to each path family's
documented HTTP status and body (:mod:`tierset.gateway.errors`), and carries
the caller's ``Authorization`` header and a request id through.
"""
