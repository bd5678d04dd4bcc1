"""A local Entra ID for MSAL: the tenant's OpenID metadata, the v2 token endpoint (client
credentials) and an App Service managed identity endpoint, each issuing opaque tokens and
recording what was asked.

MSAL talks to it through its own HTTP client hook: `FakeEntra.http_client()` is a
requests.Session that sends https://login.microsoftonline.com/... here, so MSAL's real code
(authority discovery, token cache, renewal) runs. The server has a thread of its own because
MSAL's client blocks.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

AUTHORITY_HOST = "https://login.microsoftonline.com"
IDENTITY_HEADER = "suite-identity-header"


@dataclass(frozen=True)
class TokenRequest:
    kind: str  # "secret" (client credentials) or "msi"
    client_id: str
    scope: str  # the scope (secret) or resource (msi) asked for
    tenant: str | None


class FakeEntra:
    def __init__(self, *, client_id: str, secret: str | None = None) -> None:
        self.client_id = client_id
        self.secret = secret
        self.expires_in = 3600
        self.refuse: str | None = None  # an OAuth error code to answer every token request with
        self.requests: list[TokenRequest] = []
        self.issued: dict[str, str] = {}  # scope or resource -> the last token issued for it
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                fake._get(self)

            def do_POST(self) -> None:  # noqa: N802
                fake._post(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # --- running ------------------------------------------------------------------------

    def start(self) -> FakeEntra:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def http_client(self) -> requests.Session:
        """MSAL's HTTP client: Entra ID's sign-in host is answered by this server."""
        return _Routed(AUTHORITY_HOST, self.url)

    def msi_env(self) -> dict[str, str]:
        """The variables App Service and Container Apps give a process with a managed identity."""
        return {"IDENTITY_ENDPOINT": self.url + "/msi/token", "IDENTITY_HEADER": IDENTITY_HEADER}

    def token_requests(self, kind: str | None = None) -> list[TokenRequest]:
        with self._lock:
            return [r for r in self.requests if kind is None or r.kind == kind]

    # --- the endpoints ------------------------------------------------------------------

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = parts.path.strip("/").split("/")
        if path[-3:] == ["v2.0", ".well-known", "openid-configuration"]:
            tenant = path[0]
            base = f"{AUTHORITY_HOST}/{tenant}"
            _answer(
                handler,
                200,
                {
                    "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                },
            )
        elif parts.path == "/common/discovery/instance":
            # MSAL asks which host names are one authority (for its cache's keys).
            hosts = ["login.microsoftonline.com", "login.windows.net"]
            _answer(
                handler,
                200,
                {
                    "api-version": "1.1",
                    "metadata": [
                        {
                            "preferred_network": hosts[0],
                            "preferred_cache": hosts[1],
                            "aliases": hosts,
                        }
                    ],
                },
            )
        elif parts.path == "/msi/token":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if handler.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
                _answer(handler, 401, {"statusCode": 401, "message": "no identity header"})
                return
            client_id = query.get("client_id", "")
            resource = query.get("resource", "")
            self._record(TokenRequest("msi", client_id, resource, None))
            if self.refuse or client_id != self.client_id:
                _answer(handler, 400, {"statusCode": 400, "message": "identity not found"})
                return
            token = self._issue(resource)
            _answer(
                handler,
                200,
                {
                    "access_token": token,
                    "expires_on": str(int(time.time()) + self.expires_in),
                    "resource": resource,
                    "token_type": "Bearer",
                    "client_id": client_id,
                },
            )
        else:
            _answer(handler, 404, {"error": "not_found"})

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path.strip("/").split("/")
        length = int(handler.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(handler.rfile.read(length).decode()).items()}
        if path[1:] != ["oauth2", "v2.0", "token"] or form.get("grant_type") != (
            "client_credentials"
        ):
            _answer(handler, 400, {"error": "unsupported_grant_type"})
            return
        scope = form.get("scope", "")
        self._record(TokenRequest("secret", form.get("client_id", ""), scope, path[0]))
        if self.refuse:
            _answer(handler, 400, {"error": self.refuse, "error_description": "refused"})
        elif form.get("client_id") != self.client_id or form.get("client_secret") != self.secret:
            _answer(handler, 401, {"error": "invalid_client", "error_description": "bad secret"})
        else:
            token = self._issue(scope)
            _answer(
                handler,
                200,
                {"token_type": "Bearer", "expires_in": self.expires_in, "access_token": token},
            )

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _issue(self, scope: str) -> str:
        token = f"entra-token-{next(self._serial)}"
        with self._lock:
            self.issued[scope] = token
        return token


class _Routed(requests.Session):
    """Sends requests for one https origin to a local http server instead."""

    def __init__(self, origin: str, target: str) -> None:
        super().__init__()
        self._origin = origin
        self._target = target

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if isinstance(url, str) and url.startswith(self._origin):
            url = self._target + url.removeprefix(self._origin)
        return super().request(method, url, *args, **kwargs)


def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
