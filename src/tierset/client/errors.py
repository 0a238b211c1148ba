"""The client's one error type, read from the server's rich ``google.rpc.Status``.

Every failed call raises :class:`TiersetError` (a ``grpc.aio.AioRpcError`` is never seen
by a caller of :class:`~tierset.client.Client`). It carries the gRPC code, the server's
ErrorInfo ``reason`` (e.g. ``REVISION_COMPACTED``) and its ``metadata`` (e.g.
``compacted_revision``), decoded from the ``grpc-status-details-bin`` trailer.

The trailer is decoded with two message types declared here in a private descriptor pool
rather than with googleapis-common-protos: the client installs with grpcio and protobuf
alone, and a private pool never clashes with the real ``google/rpc`` files when both are
loaded in one process (the server's tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_ERROR_INFO_URL = "type.googleapis.com/google.rpc.ErrorInfo"


def _build_types() -> tuple[Any, Any]:
    """google.rpc.Status and google.rpc.ErrorInfo, wire-compatible, in a pool of our own.

    ErrorInfo's ``map<string, string> metadata`` is declared as the repeated entry message
    a map is on the wire; ``details`` (``repeated Any``) as its two fields.
    """
    file = descriptor_pb2.FileDescriptorProto(
        name="tierset_client/rpc_status.proto", package="tierset_client", syntax="proto3"
    )
    string, int32, message = (
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
        descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
    )
    bytes_ = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

    def add(name: str, fields: list[tuple[str, int, Any, Any, str]]) -> None:
        msg = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            added = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                added.type_name = type_name

    add("Any", [("type_url", 1, string, optional, ""), ("value", 2, bytes_, optional, "")])
    add(
        "Status",
        [
            ("code", 1, int32, optional, ""),
            ("message", 2, string, optional, ""),
            ("details", 3, message, repeated, ".tierset_client.Any"),
        ],
    )
    add("Entry", [("key", 1, string, optional, ""), ("value", 2, string, optional, "")])
    add(
        "ErrorInfo",
        [
            ("reason", 1, string, optional, ""),
            ("domain", 2, string, optional, ""),
            ("metadata", 3, message, repeated, ".tierset_client.Entry"),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("tierset_client.Status")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("tierset_client.ErrorInfo")),
    )


_Status, _ErrorInfo = _build_types()


class TiersetError(Exception):
    """A call the server (or the connection to it) refused.

    ``code`` is the ``grpc.StatusCode``; ``reason`` the server's ErrorInfo reason, empty
    when the failure did not come from tierset (e.g. UNAVAILABLE: no server listening);
    ``metadata`` the ErrorInfo's metadata.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        label = f"{code.name} ({reason})" if reason else code.name
        super().__init__(f"{label}: {message}")


def from_rpc_error(error: grpc.RpcError) -> TiersetError:
    """The TiersetError an ``AioRpcError`` stands for, reason and metadata included."""
    code = error.code()
    message = error.details() or ""
    reason, metadata = "", {}
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = _Status.FromString(value)
        for detail in status.details:
            if detail.type_url == _ERROR_INFO_URL:
                info = _ErrorInfo.FromString(detail.value)
                reason = info.reason
                metadata = {entry.key: entry.value for entry in info.metadata}
    return TiersetError(code, message, reason, metadata)
