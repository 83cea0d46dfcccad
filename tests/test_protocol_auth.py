"""Authentication pieces: the server-id hash against Mojang's published examples, the RSA exchange as
a client performs it, offline UUIDs as minecraft-protocol computes them, and ``hasJoined`` against a
real HTTP session server on loopback (joined, not joined, down, slow)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import uuid
from collections.abc import Iterator

import pytest
import trio
from _node_codec import NodeCodec, start_node_codec
from _session_server import SessionServer as FakeSessionServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from infrarust.auth import (
    AuthenticationError,
    GameProfile,
    ServerKey,
    SessionServer,
    new_verify_token,
    nonce_signature_valid,
    offline_uuid,
    parse_profile,
    server_id_hash,
    tokens_match,
)
from infrarust.protocol import (
    PlayerKey,
    ProfileProperty,
    encode_varint,
    parse_encryption_response,
    parse_login_start_key,
)


def _java_hex_digest(text: str) -> str:
    """Only the hash step of server_id_hash, for the examples that hash a bare string."""
    return server_id_hash(text, b"", b"")


@pytest.mark.parametrize(
    ("name", "digest"),
    [
        ("Notch", "4ed1f46bbe04bc756bcb17c0c7ce3e4632f06a48"),
        ("jeb_", "-7c9d5b0044c130109a5d7b5fb5c317c02b4e28c1"),
        ("simon", "88e16a1019277b15d58faf0541e11910eb756f6"),
    ],
)
def test_server_id_hash_matches_the_published_examples(name: str, digest: str) -> None:
    assert _java_hex_digest(name) == digest


def test_server_id_hash_covers_secret_and_key() -> None:
    secret, key = os.urandom(16), os.urandom(162)
    number = int.from_bytes(hashlib.sha1(secret + key).digest(), "big", signed=True)
    expected = format(number, "x") if number >= 0 else "-" + format(-number, "x")
    assert server_id_hash("", secret, key) == expected


def test_rsa_exchange_as_a_client_does_it() -> None:
    key = ServerKey()
    public = serialization.load_der_public_key(key.public_der)
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 1024
    secret, token = os.urandom(16), new_verify_token()
    assert len(token) == 4
    encrypted_secret = public.encrypt(secret, padding.PKCS1v15())
    encrypted_token = public.encrypt(token, padding.PKCS1v15())
    assert key.decrypt(encrypted_secret) == secret
    assert tokens_match(token, key.decrypt(encrypted_token))
    assert not tokens_match(token, b"nope")
    # OpenSSL's implicit rejection turns a wrong ciphertext into random bytes rather than an error:
    # what stops a wrong key is the token comparison.
    other = ServerKey()
    with contextlib.suppress(AuthenticationError):
        assert not tokens_match(token, other.decrypt(encrypted_token))


@pytest.fixture(scope="module")
def node() -> Iterator[NodeCodec]:
    yield from start_node_codec()


@pytest.mark.parametrize("name", ["Notch", "jeb_", "a", "Player_With_16ch"])
def test_offline_uuid_matches_minecraft_protocol(node: NodeCodec, name: str) -> None:
    assert str(offline_uuid(name)) == node.ask({"op": "offline_uuid", "name": name})["uuid"]


def test_profile_parsing() -> None:
    player = uuid.uuid4()
    profile = parse_profile(
        {
            "id": player.hex,
            "name": "Notch",
            "properties": [{"name": "textures", "value": "v", "signature": "s"}],
        }
    )
    assert profile == GameProfile(player, "Notch", (ProfileProperty("textures", "v", "s"),))
    assert profile.login_success().properties == profile.properties
    bad_profiles: list[object] = [
        [],
        {"id": "zz", "name": "x"},
        {"id": player.hex},
        {"id": player.hex, "name": "x", "properties": [1]},
    ]
    for bad in bad_profiles:
        with pytest.raises(AuthenticationError):
            parse_profile(bad)


async def _join(server: FakeSessionServer, token: str, player: uuid.UUID, server_id: str) -> None:
    body = json.dumps({"accessToken": token, "selectedProfile": player.hex, "serverId": server_id}).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    request = (
        f"POST /session/minecraft/join HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    await stream.send_all(request + body)
    answer = b""
    while chunk := await stream.receive_some():
        answer += chunk
    await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 204")


async def test_has_joined_against_a_session_server(nursery: trio.Nursery) -> None:
    fake = await nursery.start(FakeSessionServer().serve)
    skin = {"name": "textures", "value": "dGV4", "signature": "c2ln"}
    player = fake.add_account("token-1", "Notch", [skin])
    key = ServerKey()
    server_hash = server_id_hash("", os.urandom(16), key.public_der)
    client = SessionServer(fake.url + "/", timeout=2.0)
    try:
        with pytest.raises(AuthenticationError, match="answered 204"):
            await client.has_joined("Notch", server_hash)
        await _join(fake, "token-1", player, server_hash)
        profile = await client.has_joined("Notch", server_hash, ip="127.0.0.1")
        assert profile == GameProfile(player, "Notch", (ProfileProperty("textures", "dGV4", "c2ln"),))
        assert fake.requests[-1][1].endswith(f"username=Notch&serverId={server_hash}&ip=127.0.0.1")
        with pytest.raises(AuthenticationError, match="answered 204"):
            await client.has_joined("Notch", server_id_hash("", os.urandom(16), key.public_der))
    finally:
        await client.aclose()


async def test_session_server_down_or_slow_is_refused_quickly(nursery: trio.Nursery) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    down = SessionServer(f"http://127.0.0.1:{free_port}", timeout=2.0)
    try:
        with pytest.raises(AuthenticationError, match="unreachable"):
            await down.has_joined("Notch", "abc")
    finally:
        await down.aclose()
    fake = await nursery.start(FakeSessionServer(slow=True).serve)
    slow = SessionServer(fake.url, timeout=0.5)
    try:
        started = trio.current_time()
        with pytest.raises(AuthenticationError, match="in time"):
            await slow.has_joined("Notch", "abc")
        assert trio.current_time() - started < 3.0
        assert len(fake.requests) == 1  # no retry
    finally:
        await slow.aclose()


@pytest.mark.parametrize("protocol", [759, 760])
def test_signed_nonce_of_a_1_19_client(protocol: int) -> None:
    player_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    der = player_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = b"\x05Notch\x01" + struct.pack(">q", 1_700_000_000_000) + encode_varint(len(der)) + der
    body += encode_varint(3) + b"sig"
    if protocol == 760:
        body += b"\x00"
    key = parse_login_start_key(protocol, body)
    assert key == PlayerKey(1_700_000_000_000, der, b"sig")
    assert parse_login_start_key(761, b"\x05Notch\x00") is None
    token, salt = new_verify_token(), -12345
    signature = player_key.sign(token + struct.pack(">q", salt), padding.PKCS1v15(), hashes.SHA256())
    signed = b"\x00" + struct.pack(">q", salt) + encode_varint(len(signature)) + signature
    response = parse_encryption_response(protocol, encode_varint(3) + b"sec" + signed)
    assert response.verify_token is None and response.salt == salt and response.signature == signature
    assert nonce_signature_valid(key.public_key, token, salt, signature)
    assert not nonce_signature_valid(key.public_key, token, salt + 1, signature)
    assert not nonce_signature_valid(b"not a key", token, salt, signature)
