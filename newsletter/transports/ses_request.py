"""sesv2 SendEmail (Raw content) as one signed HTTP request over kept-alive connections: botocore's credentials,
our SigV4 signer (sigv4.py) and http.client's connections (connection_pool.py), without boto3's per-call
machinery.

A boto3 `send_email` costs 2.7–3.1 ms of CPU here for the sample issue's messages; this request is exactly the
REST-JSON one boto3 sends, at a fraction of that (bench/ses_quota.py), which is what lets one process keep 500
messages per second in flight. The answer is turned into boto3's error shape, so the SES transport reads both
the same way.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .base64_pieces import Base64Pieces
from .connection_pool import ConnectFailed, ConnectionPool
from .sigv4 import PostSigner

PATH = "/v2/email/outbound-emails"
SIGNING_NAME = "ses"  # sesv2's signing name
CONTENT_TYPE = "application/json"
DATA_BEFORE = b'{"Content":{"Raw":{"Data":"'
DATA_AFTER = b'"}},'  # the other fields follow, without their opening brace


class NotOpened(Exception):
    """The connection could not be opened: nothing was sent."""


class NoAnswer(Exception):
    """The request may have left and no answer came (a read timeout, a connection reset or closed)."""


@dataclass(frozen=True)
class Answer:
    """SES's answer: its MessageId, or an error in boto3's shape (`{"Error": {...}, "ResponseMetadata": {...}}`)."""

    message_id: str | None
    error: dict[str, Any] | None
    left_at: float  # time.monotonic() as the signed request was written to its connection


class SendEmailRequest:
    """Sends SendEmail requests over one pool of kept-alive connections; safe to share between threads."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Any,
        *,
        connections: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.url = endpoint_url.rstrip("/") + PATH
        self.read_timeout = read_timeout
        self.credentials = credentials  # botocore Credentials (refreshed by botocore when they expire)
        self.pool = ConnectionPool(
            self.url, size=connections, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        self.path = urlsplit(self.url).path
        self.signer = PostSigner(region, SIGNING_NAME)
        self.base64 = Base64Pieces()

    def send(self, fields: dict[str, Any], pieces: Sequence[bytes]) -> Answer:
        """One attempt for the raw message joined from `pieces`; raises NotOpened or NoAnswer when the connection
        says so."""
        # base64 needs no JSON escaping: the 150 KB field is joined in, not run through the encoder, in one join
        body = b"".join((DATA_BEFORE, *self.base64.encode(pieces), DATA_AFTER, json.dumps(fields).encode()[1:]))
        headers = self.signer.headers(
            self.credentials.get_frozen_credentials(), self.pool.host, self.path, body, CONTENT_TYPE
        )
        try:
            with self.pool.connection() as conn:
                left_at = time.monotonic()
                try:
                    conn.request("POST", self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except TimeoutError:
                    raise NoAnswer(f"no answer within {self.read_timeout:g} s") from None
                except (OSError, http.client.HTTPException) as err:  # reset, closed, cut short, a TLS error
                    raise NoAnswer(f"the connection was closed or reset before the answer: {_one_line(err)}") from None
                if response.will_close:
                    conn.close()
        except ConnectFailed as err:
            raise NotOpened(f"{self.url}: Failed to establish a new connection: {err}") from None
        return _answer(response.status, response.headers, data, left_at)

    def close(self) -> None:
        self.pool.close()


def _answer(status: int, headers: Any, data: bytes, left_at: float) -> Answer:
    try:
        document = json.loads(data) if data else {}
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    if status == 200:
        return Answer(str(document.get("MessageId") or ""), None, left_at)
    code = str(headers.get("x-amzn-ErrorType", "") or document.get("__type", "") or document.get("code", ""))
    code = code.split(":", 1)[0].rsplit("#", 1)[-1]
    text = str(document.get("message") or document.get("Message") or data[:200].decode(errors="replace"))
    error = {"Error": {"Code": code, "Message": text}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return Answer(None, error, left_at)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
