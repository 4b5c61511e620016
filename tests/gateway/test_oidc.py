"""OIDC bearer tokens against a real local issuer: a discovery document and a JWKS served
over HTTP by the test, tokens signed with keys the test makes (RS256 and ES256)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from services.gateway.oidc import OidcVerifier
from tests.gateway.conftest import Gateway


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n: int, size: int | None = None) -> str:
    return _b64(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


class Issuer:
    """A local OIDC issuer: its keys, its documents, and how often they were fetched."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.fetches = 0
        self.url = ""

    def jwks(self) -> dict[str, Any]:
        r = self.rsa.public_key().public_numbers()
        e = self.ec.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "r1",
                    "use": "sig",
                    "alg": "RS256",
                    "n": _uint(r.n),
                    "e": _uint(r.e),
                },
                {
                    "kty": "EC",
                    "kid": "e1",
                    "crv": "P-256",
                    "x": _uint(e.x, 32),
                    "y": _uint(e.y, 32),
                },
                {"kty": "RSA", "kid": "enc", "use": "enc", "n": _uint(r.n), "e": _uint(r.e)},
            ]
        }

    def token(self, alg: str = "RS256", kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": "opsline",
            "exp": now + 300,
            "iat": now,
            "preferred_username": "carol@example.com",
            **claims,
        }
        header = {"alg": alg, "typ": "JWT", "kid": kid or ("r1" if alg == "RS256" else "e1")}
        signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(body))}".encode()
        if alg == "RS256":
            signature = self.rsa.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(self.ec.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input.decode()}.{_b64(signature)}"


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    found = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": found.url, "jwks_uri": f"{found.url}/keys"}
            elif self.path == "/keys":
                found.fetches += 1
                body = found.jwks()
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = orjson.dumps(body)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()


@pytest.fixture
async def oidc_gateway(gateway: Gateway, issuer: Issuer) -> Gateway:
    gateway.app.state.oidc = OidcVerifier(
        issuer=issuer.url,
        audience="opsline",
        username_claim="preferred_username",
        algorithms=frozenset({"RS256", "ES256"}),
        http=httpx.AsyncClient(),
    )
    return gateway


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_signed_token_maps_to_a_user_of_no_team(
    oidc_gateway: Gateway, issuer: Issuer, alg: str
) -> None:
    c = oidc_gateway.client
    me = await c.get("/v1/whoami", headers=oidc_gateway.auth(issuer.token(alg)))
    assert me.status_code == 200, me.text
    assert me.json() | {"scopes": None} == {
        "user": "carol@example.com",
        "platform_admin": False,
        "teams": {},
        "auth": "oidc",
        "token": None,
        "scopes": None,
    }
    # a member of nothing sees nothing, until a team admin adds them
    oidc_gateway.upstream.apps["shop"] = "a"
    assert (await c.get("/v1/apps", headers=oidc_gateway.auth(issuer.token(alg)))).json() == {
        "apps": []
    }
    await oidc_gateway.team("a")
    added = await c.put(
        "/v1/teams/a/members/carol@example.com",
        json={"role": "viewer"},
        headers=oidc_gateway.auth(),
    )
    assert added.status_code == 200
    apps = await c.get("/v1/apps", headers=oidc_gateway.auth(issuer.token(alg, nonce=1)))
    assert [a["name"] for a in apps.json()["apps"]] == ["shop"]


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": -120}, "expired"),  # times: seconds from now, when the test runs
        ({"aud": "someone-else"}, "another audience"),
        ({"iss": "http://evil.example"}, "another issuer"),
        ({"nbf": 600}, "not valid yet"),
        ({"preferred_username": None}, "no 'preferred_username' claim"),
    ],
)
async def test_bad_claims_are_refused(
    oidc_gateway: Gateway, issuer: Issuer, claims: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    claims = {k: now + v if k in ("exp", "nbf") else v for k, v in claims.items()}
    response = await oidc_gateway.client.get(
        "/v1/whoami", headers=oidc_gateway.auth(issuer.token(**claims))
    )
    assert response.status_code == 401
    assert reason in response.json()["detail"]


async def test_forged_and_confused_tokens_are_refused(
    oidc_gateway: Gateway, issuer: Issuer
) -> None:
    c = oidc_gateway.client
    good = issuer.token()
    head, body, sig = good.split(".")
    other = orjson.loads(base64.urlsafe_b64decode(body + "=="))
    other["preferred_username"] = "admin"
    tampered = f"{head}.{_b64(orjson.dumps(other))}.{sig}"
    for token, reason in (
        (tampered, "signature does not verify"),
        (f"{head}.{body}.", "signature does not verify"),
        (issuer.token(alg="RS256", kid="e1"), "no key of the issuer matches"),  # alg/key mix
        (issuer.token(alg="RS256", kid="enc"), "no key of the issuer matches"),  # not a sig key
    ):
        response = await c.get("/v1/whoami", headers=oidc_gateway.auth(token))
        assert response.status_code == 401, token
        assert reason in response.json()["detail"]
    none_alg = f"{_b64(orjson.dumps({'alg': 'none'}))}.{body}."
    refused = await c.get("/v1/whoami", headers=oidc_gateway.auth(none_alg))
    assert "algorithm 'none' is not accepted" in refused.json()["detail"]
    hs = f"{_b64(orjson.dumps({'alg': 'HS256', 'kid': 'r1'}))}.{body}.{sig}"
    assert (await c.get("/v1/whoami", headers=oidc_gateway.auth(hs))).status_code == 401


async def test_unknown_key_ids_do_not_hammer_the_issuer(
    oidc_gateway: Gateway, issuer: Issuer
) -> None:
    c = oidc_gateway.client
    assert (await c.get("/v1/whoami", headers=oidc_gateway.auth(issuer.token()))).status_code == 200
    assert issuer.fetches == 1
    for n in range(5):
        forged = issuer.token(kid=f"nope-{n}")
        assert (await c.get("/v1/whoami", headers=oidc_gateway.auth(forged))).status_code == 401
    assert issuer.fetches == 1  # no refetch within REFRESH_MIN_S


async def test_api_tokens_still_work_beside_oidc(oidc_gateway: Gateway) -> None:
    me = await oidc_gateway.client.get("/v1/whoami", headers=oidc_gateway.auth())
    assert me.json()["user"] == "admin" and me.json()["auth"] == "token"
