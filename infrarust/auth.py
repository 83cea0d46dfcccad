"""Online-mode authentication for ``client_only``: the server's RSA key, the server-id hash, and the
session server's ``hasJoined`` endpoint.

The flow, on the client leg: send an Encryption Request with :attr:`ServerKey.public_der` and a random
verify token; decrypt the client's Encryption Response with :meth:`ServerKey.decrypt`, compare the
token (a 1.19-1.19.2 client with a chat key signs it instead: :func:`nonce_signature_valid`), switch
the leg's codec to encryption with the shared secret; compute :func:`server_id_hash` and ask
:meth:`SessionServer.has_joined`, whose profile the player then logs in with. Everything but
``has_joined`` is pure computation.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import uuid

import httpx
from attrs import frozen
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from infrarust.protocol import LoginSuccess, ProfileProperty

MOJANG_SESSION_SERVER = "https://sessionserver.mojang.com"
"""The default ``[auth] session_server``."""

VERIFY_TOKEN_SIZE = 4
"""Vanilla sends a 4-byte random verify token."""

DEFAULT_TIMEOUT = 5.0
"""Seconds the session server gets to answer ``hasJoined`` (connect, read and the whole request)."""

FAILED_TO_VERIFY = "Failed to verify username!"
"""What vanilla tells a player the session server did not vouch for."""


class AuthenticationError(Exception):
    """The player could not be authenticated. The message says why, for the log; the player is told
    :data:`FAILED_TO_VERIFY` (or the caller's own words)."""


class ServerKey:
    """An RSA-1024 key pair, as vanilla makes one per process for the Encryption Request."""

    def __init__(self, private_key: rsa.RSAPrivateKey | None = None) -> None:
        self._private = private_key or rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.public_der: bytes = self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        """The public key as the Encryption Request carries it (X.509 SubjectPublicKeyInfo, DER)."""

    def decrypt(self, data: bytes) -> bytes:
        """Decrypt an RSA/PKCS#1 v1.5 field of the Encryption Response.

        AuthenticationError when the bytes are not a ciphertext for this key. With OpenSSL's implicit
        rejection (3.2+) a wrong ciphertext decrypts to random bytes instead, so the caller's checks
        (the verify token, the secret's 16 bytes) are what refuse it.
        """
        try:
            return self._private.decrypt(data, padding.PKCS1v15())
        except ValueError:
            raise AuthenticationError("the encryption response was not encrypted with our key") from None


def new_verify_token() -> bytes:
    """A fresh random verify token."""
    return os.urandom(VERIFY_TOKEN_SIZE)


def tokens_match(expected: bytes, received: bytes) -> bool:
    """Compare verify tokens in constant time."""
    return hmac.compare_digest(expected, received)


def nonce_signature_valid(public_key_der: bytes, verify_token: bytes, salt: int, signature: bytes) -> bool:
    """Whether a 1.19-1.19.2 client's Encryption Response signature (SHA256withRSA over the verify
    token followed by the 8-byte salt) was made with the key it sent in its Login Start."""
    try:
        public_key = serialization.load_der_public_key(public_key_der)
    except (ValueError, UnsupportedAlgorithm):
        return False
    if not isinstance(public_key, rsa.RSAPublicKey):
        return False
    try:
        public_key.verify(
            signature, verify_token + struct.pack(">q", salt), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


def server_id_hash(server_id: str, shared_secret: bytes, public_key_der: bytes) -> str:
    """The ``serverId`` of ``join`` and ``hasJoined``: SHA-1 over the server id (ISO-8859-1), the shared
    secret and the DER public key, printed as Java's ``BigInteger.toString(16)`` prints the digest read
    as a signed (two's-complement) number: lowercase hex, no leading zeros, a minus sign if negative."""
    digest = hashlib.sha1(server_id.encode("iso-8859-1") + shared_secret + public_key_der).digest()
    number = int.from_bytes(digest, "big", signed=True)
    return f"-{-number:x}" if number < 0 else f"{number:x}"


def offline_uuid(name: str) -> uuid.UUID:
    """The UUID a vanilla offline-mode server gives ``name``: Java's ``nameUUIDFromBytes`` (an MD5,
    version 3 UUID) of ``OfflinePlayer:<name>``."""
    digest = bytearray(hashlib.md5(f"OfflinePlayer:{name}".encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x30
    digest[8] = (digest[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(digest))


@frozen
class GameProfile:
    """An authenticated player: the session server's UUID, name and signed properties (skin)."""

    uuid: uuid.UUID
    name: str
    properties: tuple[ProfileProperty, ...] = ()

    def login_success(self) -> LoginSuccess:
        """The Login Success that logs this profile in."""
        return LoginSuccess(self.uuid, self.name, self.properties)


def parse_profile(data: object) -> GameProfile:
    """A profile from the session server's JSON (``id`` without hyphens, ``name``, ``properties``)."""
    if not isinstance(data, dict):
        raise AuthenticationError("the session server's profile is not a JSON object")
    raw_id, name, raw_properties = data.get("id"), data.get("name"), data.get("properties", [])
    if not isinstance(raw_id, str) or not isinstance(name, str) or not isinstance(raw_properties, list):
        raise AuthenticationError("the session server's profile lacks an id, a name or a property list")
    try:
        player_uuid = uuid.UUID(hex=raw_id)
    except ValueError:
        raise AuthenticationError(f"the session server's profile id {raw_id!r} is not a UUID") from None
    properties = []
    for item in raw_properties:
        if not isinstance(item, dict):
            raise AuthenticationError("a profile property is not a JSON object")
        prop_name, value, signature = item.get("name"), item.get("value"), item.get("signature")
        if not isinstance(prop_name, str) or not isinstance(value, str):
            raise AuthenticationError("a profile property lacks its name or value")
        if signature is not None and not isinstance(signature, str):
            raise AuthenticationError("a profile property's signature is not a string")
        properties.append(ProfileProperty(prop_name, value, signature))
    return GameProfile(player_uuid, name, tuple(properties))


class SessionServer:
    """A client of a Yggdrasil-compatible session server's ``hasJoined`` endpoint, over httpx.

    One request per login, bounded by ``timeout`` seconds, never retried: a slow or down session server
    refuses players quickly instead of piling up requests. Owns its HTTP client; ``aclose`` it.
    """

    def __init__(self, base_url: str = MOJANG_SESSION_SERVER, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False)

    async def has_joined(self, username: str, server_hash: str, ip: str | None = None) -> GameProfile:
        """The profile of ``username`` if it told the session server it joins ``server_hash``.

        ``ip`` (the player's address) is sent only when given, for ``prevent_proxy_connections``.
        Raises AuthenticationError for anything but a 200 answer with a valid profile of that name.
        """
        params = {"username": username, "serverId": server_hash}
        if ip is not None:
            params["ip"] = ip
        url = f"{self.base_url}/session/minecraft/hasJoined"
        try:
            response = await self._client.get(url, params=params)
        except httpx.TimeoutException:
            raise AuthenticationError("the session server did not answer in time") from None
        except httpx.HTTPError as exc:
            raise AuthenticationError(f"the session server is unreachable: {exc}") from None
        if response.status_code != 200:
            raise AuthenticationError(f"the session server answered {response.status_code}: not joined")
        try:
            data = response.json()
        except ValueError:
            raise AuthenticationError("the session server's answer is not JSON") from None
        profile = parse_profile(data)
        if profile.name.lower() != username.lower():
            raise AuthenticationError(f"the session server vouched for {profile.name!r}, not {username!r}")
        return profile

    async def aclose(self) -> None:
        """Close the HTTP client's connections."""
        await self._client.aclose()
