"""Request signing shared by the server, the Python client and `pitwarden client sign`.

    signature = hex(HMAC-SHA256(secret, "PITWARDEN-HMAC-SHA256\\n" + METHOD + "\\n" + PATH_AND_QUERY
                                + "\\n" + TIMESTAMP + "\\n" + NONCE + "\\n" + hex(SHA-256(body))))

sent as X-Client-Id, X-Request-Timestamp (Unix seconds), X-Request-Nonce, X-Signature.
"""

import hashlib
import hmac
import secrets
import time

SCHEME = "PITWARDEN-HMAC-SHA256"
NONCE_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"


def canonical_request(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{SCHEME}\n{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{digest}".encode()


def signature(
    secret: str, *, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    message = canonical_request(method, path, timestamp, nonce, body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    *,
    client_id: str,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    return {
        "X-Client-Id": client_id,
        "X-Request-Timestamp": ts,
        "X-Request-Nonce": nonce,
        "X-Signature": signature(
            secret, method=method, path=path, timestamp=ts, nonce=nonce, body=body
        ),
    }
