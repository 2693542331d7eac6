"""AWS Signature Version 4 for one kind of request: a POST with a body and no query string, as sesv2's SendEmail.

The algorithm is AWS's published one (and botocore's: tests/transports/test_sigv4.py checks the two sign alike).
What makes it cheaper than botocore's `SigV4Auth` per request is that it knows the request's shape (four or
five headers, no query, a path that is already canonical) and keeps the day's signing key, which botocore derives
again with four HMACs for every request.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import threading
from dataclasses import dataclass
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class SigningCredentials:
    """The parts of AWS credentials a signature uses (botocore's ReadOnlyCredentials has these names)."""

    access_key: str
    secret_key: str
    token: str | None = None


class PostSigner:
    """Signs POST requests to one region and service; safe to share between threads."""

    def __init__(self, region: str, service: str) -> None:
        self.region = region
        self.service = service
        self._lock = threading.Lock()
        self._key: tuple[str, str, bytes] | None = None  # (secret, day, key)

    def headers(
        self,
        credentials: SigningCredentials,
        host: str,
        path: str,
        body: bytes,
        content_type: str,
        now: datetime.datetime | None = None,
    ) -> dict[str, str]:
        """The request's headers, signed: Content-Type, Host, X-Amz-Date, X-Amz-Security-Token (with a session
        token) and Authorization. `host` is as the Host header says it (the port only when not the scheme's)."""
        stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = {"content-type": content_type, "host": host, "x-amz-date": stamp}
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        names = ";".join(signed)  # already in sorted order
        canonical = "\n".join(
            (
                "POST",
                quote(path or "/", safe="/~"),
                "",  # no query string
                *(f"{name}:{' '.join(value.split())}" for name, value in signed.items()),
                "",
                names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256)
        headers = {
            "Content-Type": content_type,
            "Host": host,
            "X-Amz-Date": stamp,
            "Authorization": f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={names}, "
            f"Signature={signature.hexdigest()}",
        }
        if credentials.token:
            headers["X-Amz-Security-Token"] = credentials.token
        return headers

    def _signing_key(self, secret: str, day: str) -> bytes:
        """The day's key for this region and service, derived once per secret and day."""
        with self._lock:
            if self._key is not None and self._key[:2] == (secret, day):
                return self._key[2]
            key = ("AWS4" + secret).encode()
            for part in (day, self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._key = (secret, day, key)
            return key
