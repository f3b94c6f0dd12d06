"""A local token authority for Teams: OpenID metadata, a JWKS and a token endpoint on 127.0.0.1.

It signs RS256 tokens with a test key made at start-up, the two kinds a Teams bot meets:

- `channel_token(app_id, service_url)`: what the Bot Connector sends with every activity
  (issuer `https://api.botframework.com`, audience the bot's app id, a `serviceurl` claim);
- `POST /{tenant}/oauth2/v2.0/token` (client credentials): what the bot asks for before it
  calls the Connector (audience `https://api.botframework.com`); the secret must match.

`GET /v1/.well-known/openidconfiguration` and `/v1/.well-known/keys` serve the metadata and
the keys. The Agents SDK's validator (`JwtTokenValidator`) takes its JWKS address from the
token's issuer and has no setting to point it elsewhere, so `route_sdk_jwks()` puts a key
client for this authority's JWKS in the SDK's own JWKS client cache under the Bot Framework
address: the signature, audience, expiry and issuer checks that follow are the SDK's own.
`verify_service_token` is how the Connector stand-in checks the bot's bearer tokens.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from sandbox.http import RunningServer, start

CHANNEL_ISSUER = "https://api.botframework.com"
CONNECTOR_AUDIENCE = "https://api.botframework.com"
BOT_FRAMEWORK_JWKS = "https://login.botframework.com/v1/.well-known/keys"


@dataclass
class TokenAuthority:
    app_id: str
    app_password: str
    tenant_id: str = "00000000-0000-0000-0000-0000000000aa"
    url: str = ""
    issued: list[dict[str, Any]] = field(default_factory=list)   # client-credentials grants
    _key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(
        public_exponent=65537, key_size=2048))
    _kid: str = field(default_factory=lambda: uuid.uuid4().hex)
    _server: RunningServer | None = None
    _routed: Any = None

    async def start(self) -> TokenAuthority:
        app = web.Application()
        app.router.add_get("/v1/.well-known/openidconfiguration", self._metadata)
        app.router.add_get("/v1/.well-known/keys", self._keys)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        self._server = await start(app)
        self.url = self._server.url
        return self

    async def stop(self) -> None:
        self.unroute_sdk_jwks()
        if self._server is not None:
            await self._server.stop()

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/v1/.well-known/keys"

    @property
    def token_url(self) -> str:
        return f"{self.url}/{self.tenant_id}/oauth2/v2.0/token"

    # --- tokens -----------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None) -> str:
        now = int(time.time())
        body = {"iat": now, "nbf": now, "exp": now + 3600, **claims}
        return jwt.encode(body, key or self._key, algorithm="RS256",
                          headers={"kid": self._kid})

    def channel_token(self, service_url: str, *, audience: str | None = None) -> str:
        """A Bot Connector → bot token for `service_url`."""
        return self.sign({"iss": CHANNEL_ISSUER, "aud": audience or self.app_id,
                          "serviceurl": service_url})

    def forged_token(self, service_url: str) -> str:
        """The same claims signed by a key nobody published (the bot must refuse it)."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.sign({"iss": CHANNEL_ISSUER, "aud": self.app_id,
                          "serviceurl": service_url}, key=other)

    def verify_service_token(self, token: str) -> dict[str, Any]:
        """A bot → Connector token: ours, for the Connector, for this app; raises otherwise."""
        claims = jwt.decode(token, self._key.public_key(), algorithms=["RS256"],
                            audience=CONNECTOR_AUDIENCE, issuer=self._issuer())
        if claims.get("appid") != self.app_id:
            raise jwt.InvalidTokenError("not this bot's token")
        return claims

    def _issuer(self) -> str:
        return f"{self.url}/{self.tenant_id}/v2.0"

    # --- routes -------------------------------------------------------------------------------

    async def _metadata(self, _request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": CHANNEL_ISSUER,
            "jwks_uri": self.jwks_url,
            "token_endpoint": self.token_url,
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_post"],
        })

    async def _keys(self, _request: web.Request) -> web.Response:
        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        jwk.update({"kid": self._kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": [jwk]})

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("client_id") != self.app_id or \
                form.get("client_secret") != self.app_password:
            return web.json_response({"error": "invalid_client"}, status=401)
        scope = str(form.get("scope", ""))
        self.issued.append({"client_id": self.app_id, "scope": scope})
        token = self.sign({"iss": self._issuer(), "aud": CONNECTOR_AUDIENCE,
                           "appid": self.app_id, "tid": self.tenant_id})
        return web.json_response({"token_type": "Bearer", "expires_in": 3600,
                                  "access_token": token})

    # --- the SDK's JWKS address -------------------------------------------------------------

    def route_sdk_jwks(self) -> None:
        """The SDK fetches Bot Framework signing keys from this authority from now on."""
        from jwt import PyJWKClient
        from microsoft_agents.hosting.core.authorization.jwt.jwt_token_validator import (
            JwtTokenValidator,
            _JwkClientCacheEntry,
        )
        cache = JwtTokenValidator._jwk_client_manager._cache
        self._routed = cache.get(BOT_FRAMEWORK_JWKS)
        cache[BOT_FRAMEWORK_JWKS] = _JwkClientCacheEntry(PyJWKClient(self.jwks_url),
                                                         threading.Lock())

    def unroute_sdk_jwks(self) -> None:
        from microsoft_agents.hosting.core.authorization.jwt.jwt_token_validator import (
            JwtTokenValidator,
        )
        cache = JwtTokenValidator._jwk_client_manager._cache
        if self._routed is not None:
            cache[BOT_FRAMEWORK_JWKS] = self._routed
        else:
            cache.pop(BOT_FRAMEWORK_JWKS, None)
        self._routed = None


class LocalClientCredentials:
    """The client-credentials grant against this authority, in the shape of the SDK's token
    providers (`AccessTokenProviderBase`): MSAL, which the bot uses in production, accepts
    only https authorities and asks login.microsoftonline.com to discover an unknown one, so
    it cannot be pointed at 127.0.0.1; this posts the same form (client id, secret, scope)."""

    def __init__(self, configuration: Any, token_url: str) -> None:
        self._configuration = configuration
        self._token_url = token_url
        self._cached: tuple[str, float] | None = None

    @property
    def configuration(self) -> Any:
        return self._configuration

    async def get_access_token(self, resource_url: str, scopes: list[str],
                               force_refresh: bool = False) -> str:
        import aiohttp
        if self._cached and not force_refresh and self._cached[1] > time.time() + 60:
            return self._cached[0]
        form = {"grant_type": "client_credentials",
                "client_id": self._configuration.CLIENT_ID,
                "client_secret": self._configuration.CLIENT_SECRET,
                "scope": " ".join(scopes or [f"{resource_url}/.default"])}
        async with aiohttp.ClientSession() as session, \
                session.post(self._token_url, data=form) as response:
            response.raise_for_status()
            body = await response.json()
        self._cached = (body["access_token"], time.time() + int(body["expires_in"]))
        return body["access_token"]


def local_connections(authority: TokenAuthority, configuration: Any) -> Any:
    """The SDK's connection manager with the bot's one connection served by `authority`."""
    from microsoft_agents.hosting.core.authorization.connection_manager import (
        ConnectionManager,
    )
    return ConnectionManager(
        provider_factory=lambda config: LocalClientCredentials(config, authority.token_url),
        connections_configurations={"SERVICE_CONNECTION": configuration})
