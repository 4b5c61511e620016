"""OIDC bearer tokens: JWTs verified against the issuer's JWKS (RS256, ES256).

Only what a resource server needs: the signature with a key from the issuer's JWKS (found
through its discovery document unless a JWKS URL is set), `exp`/`nbf` with a small leeway,
`iss` and `aud`. The key set is fetched lazily and again when a token names a key id we do
not hold (at most every REFRESH_MIN_S, so forged key ids cannot make us hammer the issuer).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

LEEWAY_S = 30
REFRESH_MIN_S = 30.0
RETRY_AFTER_FAILURE_S = 2.0
FETCH_TIMEOUT_S = 5.0
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class OidcError(Exception):
    """Why a token was refused (said to the client in the 401)."""


def looks_like_jwt(token: str) -> bool:
    return bool(_JWT.match(token))


def _b64(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise OidcError("token is not base64url") from None


def _int(value: Any) -> int:
    if not isinstance(value, str):
        raise OidcError("JWKS key is missing a parameter")
    return int.from_bytes(_b64(value), "big")


def key_from_jwk(jwk: dict[str, Any]) -> tuple[str, PublicKey] | None:
    """(algorithm, key) of a JWK we can verify with; None for others (enc keys, other kinds)."""
    if jwk.get("use", "sig") != "sig":
        return None
    if jwk.get("kty") == "RSA":
        key: PublicKey = rsa.RSAPublicNumbers(_int(jwk.get("e")), _int(jwk.get("n"))).public_key()
        alg = "RS256"
    elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        numbers = ec.EllipticCurvePublicNumbers(
            _int(jwk.get("x")), _int(jwk.get("y")), ec.SECP256R1()
        )
        key, alg = numbers.public_key(), "ES256"
    else:
        return None
    if jwk.get("alg", alg) != alg:
        return None
    return alg, key


def verify_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
    try:
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64:
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
            return
    except InvalidSignature:
        pass
    raise OidcError("token signature does not verify")


@dataclass
class OidcVerifier:
    issuer: str
    audience: str
    username_claim: str
    algorithms: frozenset[str]
    http: httpx.AsyncClient
    jwks_url: str = ""
    _keys: dict[str, tuple[str, PublicKey]] = field(default_factory=dict)
    _fetched_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once signature, time, issuer and audience check out."""
        parts = token.split(".")
        if len(parts) != 3:
            raise OidcError("not a JWT")
        try:
            header = orjson.loads(_b64(parts[0]))
            claims = orjson.loads(_b64(parts[1]))
        except orjson.JSONDecodeError:
            raise OidcError("token header or claims are not JSON") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise OidcError("token header and claims must be JSON objects")
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise OidcError(f"token algorithm {alg!r} is not accepted")
        found = await self._key(str(header.get("kid", "")))
        if found is None or found[0] != alg:
            raise OidcError("no key of the issuer matches the token (kid, alg)")
        verify_signature(alg, found[1], f"{parts[0]}.{parts[1]}".encode(), _b64(parts[2]))
        self._check_claims(claims)
        return claims

    def username(self, claims: dict[str, Any]) -> str:
        value = claims.get(self.username_claim)
        if not isinstance(value, str) or not value:
            raise OidcError(f"token has no {self.username_claim!r} claim")
        return value

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise OidcError("token has no exp claim")
        if exp + LEEWAY_S < now:
            raise OidcError("token has expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf - LEEWAY_S > now:
            raise OidcError("token is not valid yet")
        if claims.get("iss") != self.issuer:
            raise OidcError("token was issued by another issuer")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.audience and self.audience not in audiences:
            raise OidcError("token is meant for another audience")

    def _pick(self, kid: str) -> tuple[str, PublicKey] | None:
        if kid:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _key(self, kid: str) -> tuple[str, PublicKey] | None:
        found = self._pick(kid)
        if found is not None:
            return found
        async with self._lock:
            if time.monotonic() - self._fetched_at >= REFRESH_MIN_S:
                self._fetched_at = time.monotonic()
                self._keys = await self._fetch_keys()
        return self._pick(kid)

    async def _fetch_keys(self) -> dict[str, tuple[str, PublicKey]]:
        url = self.jwks_url or await self._discover()
        document = await self._get_json(url)
        keys: dict[str, tuple[str, PublicKey]] = {}
        for jwk in document.get("keys", []) if isinstance(document, dict) else []:
            if isinstance(jwk, dict):
                try:
                    found = key_from_jwk(jwk)
                except (OidcError, ValueError):
                    continue
                if found is not None:
                    keys[str(jwk.get("kid", ""))] = found
        return keys

    async def _discover(self) -> str:
        document = await self._get_json(
            f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        )
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            raise OidcError("the issuer's discovery document names another issuer")
        url = document.get("jwks_uri")
        if not isinstance(url, str):
            raise OidcError("the issuer's discovery document has no jwks_uri")
        self.jwks_url = url
        return url

    async def _get_json(self, url: str) -> Any:
        try:
            response = await self.http.get(url, timeout=FETCH_TIMEOUT_S)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            # the issuer being away for a moment should not lock users out for long
            self._fetched_at = time.monotonic() - REFRESH_MIN_S + RETRY_AFTER_FAILURE_S
            raise OidcError(f"cannot read the issuer's keys: {type(exc).__name__}") from None
