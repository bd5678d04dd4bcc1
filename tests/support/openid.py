"""A local Bot Framework OpenID metadata endpoint with the suite's own RSA key, and tokens
signed by it, so authentication is tested without the real Bot Framework.

It serves from a thread of its own: botbuilder fetches the metadata with blocking `requests`
calls on the bot's event loop, which would deadlock a server on that same loop.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://api.botframework.com"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class OpenIdServer:
    def __init__(self, key: rsa.RSAPrivateKey, key_id: str = "suite-key"):
        self.key = key
        self.key_id = key_id
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        jwk |= {"kid": key_id, "use": "sig", "endorsements": ["msteams"]}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                if self.path == "/openid":
                    body: dict[str, Any] = {"issuer": ISSUER, "jwks_uri": server.url + "/keys"}
                elif self.path == "/keys":
                    body = {"keys": [jwk]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> OpenIdServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def token(
        self,
        *,
        audience: str,
        service_url: str,
        issuer: str = ISSUER,
        expires_in: int = 3600,
        key: rsa.RSAPrivateKey | None = None,
        key_id: str | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "serviceurl": service_url,
            "nbf": now - 60,
            "iat": now - 60,
            "exp": now + expires_in,
        }
        return jwt.encode(
            claims, key or self.key, algorithm="RS256", headers={"kid": key_id or self.key_id}
        )
