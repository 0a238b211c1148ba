"""The OpenAPI document: it describes exactly the served paths, and the live gateway keeps to
it under schemathesis's generated requests."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tierset.gateway.app import ROUTES
from tierset.gateway.openapi import document

# schemathesis's checks that judge the gateway against the document (the others judge
# business behaviour, e.g. that a valid-looking body is accepted, which the server owns).
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def _served() -> dict[str, set[str]]:
    return {
        route.path.replace(":keylist", ""): (route.methods or set()) - {"HEAD"} for route in ROUTES
    }


def test_the_document_lists_exactly_the_served_paths_and_methods():
    documented = {
        path: {method.upper() for method in item if method != "parameters"}
        for path, item in document()["paths"].items()
    }

    assert documented == _served()


async def test_the_gateway_serves_the_document(http):
    response = await http.get("/openapi.json")

    assert response.status_code == 200
    assert response.json() == document()


async def test_schemathesis_finds_no_server_error_and_no_response_off_the_document(
    gateway, rest_auth_headers, tmp_path
):
    st = Path(sys.executable).with_name("st")
    headers = [
        arg for name, value in rest_auth_headers.items() for arg in ("-H", f"{name}:{value}")
    ]
    # Only ever 127.0.0.1: no proxy from the environment may route these requests elsewhere.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = await asyncio.create_subprocess_exec(
        str(st),
        "run",
        f"{gateway}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "10",
        # One worker: hypothesis describing strategies from several threads at once trips a
        # CPython 3.11 AST bug ("recursion depth mismatch") inside schemathesis.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
        *headers,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)

    assert process.returncode == 0, output.decode()[-8000:]


# Paths anyone may call; every other operation needs credentials.
ANONYMOUS_PATHS = {"/oauth/token", "/healthz", "/readyz", "/openapi.json"}


def test_the_document_declares_how_to_authenticate():
    schemes = document()["components"]["securitySchemes"]

    assert schemes["oauth2"]["type"] == "oauth2"
    assert schemes["oauth2"]["flows"]["password"]["tokenUrl"] == "/oauth/token"
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["basic"] == {**schemes["basic"], "type": "http", "scheme": "basic"}


def test_every_operation_says_which_credentials_it_takes():
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if path in ANONYMOUS_PATHS:
                assert operation["security"] == [], (path, method)
            else:
                assert {name for requirement in operation["security"] for name in requirement} == {
                    "oauth2",
                    "bearer",
                    "basic",
                }, (path, method)
