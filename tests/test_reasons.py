"""The one catalogue of error reasons: the Python enum, the proto enum, and the raise sites.

`tierset.core.reasons.Reason` is what the server and the gateway raise;
`tierset.v1.ErrorReason` is what a client reads. They must hold the same names, each
its own wire string, and nothing in src/ may send a reason that is not catalogued.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from tierset.api.status import grpc_code, to_rpc_status
from tierset.core import errors
from tierset.core.errors import Code, TiersetError
from tierset.core.reasons import Reason
from tierset.v1 import error_reason_pb2

SRC = Path(__file__).resolve().parent.parent / "src" / "tierset"
PROTO = Path(__file__).resolve().parent.parent / "protos" / "tierset" / "v1" / "error_reason.proto"

# Everything that takes a reason, positionally or as `reason=`.
_TAKES_A_REASON = {
    "TiersetError",
    "Failure",
    "bad_field",
    "invalid_argument",
    "not_found",
    "already_exists",
    "aborted",
    "unavailable",
    "resource_exhausted",
    "bad_request",
    "too_large",
    "unauthenticated",
    "_refuse_head",
}
_REASON_SHAPE = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*")


def test_the_python_and_proto_catalogues_hold_the_same_names():
    proto_names = set(error_reason_pb2.ErrorReason.keys())
    assert proto_names - {"ERROR_REASON_UNSPECIFIED"} == set(Reason.__members__)
    assert error_reason_pb2.ErrorReason.Value("ERROR_REASON_UNSPECIFIED") == 0


def test_each_reason_is_unique_and_its_own_wire_string():
    assert len({r.value for r in Reason}) == len(Reason)
    assert all(reason.value == reason.name for reason in Reason)
    numbers = error_reason_pb2.ErrorReason.values()
    assert len(set(numbers)) == len(numbers)


def test_every_proto_reason_is_documented():
    # A comment line directly above each value says its status and what to do.
    lines = PROTO.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s+[A-Z_]+ = \d+;", line):
            assert lines[i - 1].strip().startswith("//"), f"undocumented: {line.strip()}"


def _source_files() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if "v1" not in p.relative_to(SRC).parts]


def _called_name(call: ast.Call) -> str:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return call.func.id if isinstance(call.func, ast.Name) else ""


def test_no_reason_in_src_is_a_string_outside_the_catalogue():
    """Every raise site names a Reason member: no string reasons left over, none invented."""
    catalogued = {r.value for r in Reason}
    left_over = []
    for path in _source_files():
        if path == SRC / "core" / "reasons.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        where = path.relative_to(SRC)
        for node in ast.walk(tree):
            # A catalogued reason spelled as a string (a dict key, a default, an argument).
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in catalogued
                and id(node) not in docstrings
            ):
                left_over.append(f"{where}:{node.lineno} {node.value!r}")
            # A reason-shaped string or an f-string handed to anything that takes a reason.
            if isinstance(node, ast.Call) and _called_name(node) in _TAKES_A_REASON:
                arguments = [*node.args, *(k.value for k in node.keywords)]
                for argument in arguments:
                    if isinstance(argument, ast.JoinedStr) and any(
                        k.arg == "reason" and k.value is argument for k in node.keywords
                    ):
                        left_over.append(f"{where}:{argument.lineno} f-string reason")
                    if (
                        isinstance(argument, ast.Constant)
                        and isinstance(argument.value, str)
                        and _REASON_SHAPE.fullmatch(argument.value)
                    ):
                        left_over.append(f"{where}:{argument.lineno} {argument.value!r}")
    assert left_over == []


def test_an_uncatalogued_reason_cannot_be_raised():
    with pytest.raises(ValueError, match="NOT_A_REASON"):
        TiersetError(Code.NOT_FOUND, "NOT_A_REASON", "x")  # type: ignore[arg-type]
    # A wire string is accepted and becomes the member.
    assert TiersetError(Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "x").reason is Reason.ACCOUNT_NOT_FOUND  # type: ignore[arg-type]


def test_tierset_codes_are_grpcs_by_number_and_name():
    for code in Code:
        assert grpc_code(code).value[0] == int(code)
        assert grpc_code(code).name == code.name
    assert {grpc_code(code) for code in Code} == set(grpc.StatusCode)


def test_a_status_carries_the_reason_as_its_wire_string():
    status = to_rpc_status(errors.bad_field("key", "key is required"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "tierset.dev")
    assert error_reason_pb2.ErrorReason.Value(info.reason) == error_reason_pb2.INVALID_ARGUMENT
