"""The client over TLS: tierset serves plaintext gRPC and TLS ends in front of it (an
ingress or mesh in a deployment). Here a TLS terminator in this process (ALPN h2, a
certificate made for the test) forwards bytes to the real session server, so the
client's TLS option is proved end to end: the handshake against the given roots, a
read and a write through it, and a refusal when the roots do not vouch for the server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tierset import client as tc


def _certificate(tmp_path) -> tuple[bytes, str, str]:
    """A self-signed certificate for localhost and 127.0.0.1: (its PEM, cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem, str(cert_file), str(key_file)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()


@contextlib.asynccontextmanager
async def tls_terminator(upstream_port: int, cert_file: str, key_file: str) -> AsyncIterator[int]:
    """Listens with TLS (h2) on a free port and forwards each connection to upstream_port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["h2"])

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    listener = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=context)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()


async def test_the_client_reads_and_writes_over_tls(
    server, platform_caller, new_account, unique_key, tmp_path
):
    pem, cert_file, key_file = _certificate(tmp_path)
    account, key = tc.Scope.account(await new_account()), unique_key("TLS")
    async with (
        tls_terminator(server.port, cert_file, key_file) as port,
        tc.Client(
            f"localhost:{port}",
            tc.ApiToken(platform_caller.token),
            tls=True,
            root_certificates=pem,
        ) as client,
    ):
        written = await client.put(account, key, 7)
        read = await client.get(account, [key])
    assert written.created
    assert read.value(key) == 7


async def test_a_server_the_roots_do_not_vouch_for_is_refused(
    server, platform_caller, new_account, tmp_path
):
    _, cert_file, key_file = _certificate(tmp_path)
    (tmp_path / "other").mkdir()
    other_roots, _, _ = _certificate(tmp_path / "other")  # another certificate, not the server's
    account = tc.Scope.account(await new_account())
    async with (
        tls_terminator(server.port, cert_file, key_file) as port,
        tc.Client(
            f"localhost:{port}",
            tc.ApiToken(platform_caller.token),
            tls=True,
            root_certificates=other_roots,
            timeout_seconds=3,
            read_attempts=1,
        ) as client,
    ):
        with pytest.raises((tc.TiersetError, grpc.aio.AioRpcError)) as refused:
            await client.get(account, ["ANY.KEY"])
    assert "UNAVAILABLE" in str(refused.value)
