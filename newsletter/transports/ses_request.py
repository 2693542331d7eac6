"""sesv2 SendEmail (Raw content) as one signed HTTP request: botocore's credentials and SigV4 signer, urllib3's
connection pool (both what boto3 itself uses), without the client's per-call machinery.

A boto3 `send_email` costs 2.7–3.1 ms of CPU here for the sample issue's 60 KB messages; this request costs
about 1.2 ms (bench/ses_quota.py), which is what lets one process keep 500 messages per second in flight. The
request is exactly the REST-JSON one boto3 sends; the answer is turned into boto3's error shape, so the SES
transport reads both the same way.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, replace
from typing import Any

PATH = "/v2/email/outbound-emails"
SIGNING_NAME = "ses"  # sesv2's signing name


class NotOpened(Exception):
    """The connection could not be opened: nothing was sent."""


class NoAnswer(Exception):
    """The request may have left and no answer came (a read timeout, a connection reset or closed)."""


@dataclass(frozen=True)
class Answer:
    """SES's answer: its MessageId, or an error in boto3's shape (`{"Error": {...}, "ResponseMetadata": {...}}`)."""

    message_id: str | None
    error: dict[str, Any] | None
    left_at: float = 0.0  # time.monotonic() as the signed request went to the connection pool


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
        import urllib3

        self.url = endpoint_url.rstrip("/") + PATH
        self.read_timeout = read_timeout
        self.region = region
        self.credentials = credentials  # botocore Credentials (refreshed by botocore when they expire)
        self.pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=connections,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        )

    def send(self, fields: dict[str, Any], raw: bytes) -> Answer:
        """One attempt; raises NotOpened or NoAnswer when the connection says so."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from urllib3.exceptions import (
            ConnectTimeoutError,
            HTTPError,
            NewConnectionError,
            ProtocolError,
            ProxyError,
            ReadTimeoutError,
        )

        # base64 needs no JSON escaping: the 80 KB field is joined in, not run through the encoder
        body = b'{"Content":{"Raw":{"Data":"' + base64.b64encode(raw) + b'"}},' + json.dumps(fields).encode()[1:]
        request = AWSRequest(method="POST", url=self.url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(self.credentials.get_frozen_credentials(), SIGNING_NAME, self.region).add_auth(request)
        left_at = time.monotonic()
        try:
            response = self.pool.request("POST", self.url, body=body, headers=dict(request.headers.items()))
        except (NewConnectionError, ConnectTimeoutError, ProxyError) as err:
            raise NotOpened(f"{self.url}: {_reason(err)}") from None
        except ReadTimeoutError:
            raise NoAnswer(f"no answer within {self.read_timeout:g} s") from None
        except ProtocolError as err:
            raise NoAnswer(f"the connection was closed or reset before the answer: {_reason(err)}") from None
        except HTTPError as err:  # a TLS error after the request left, an answer cut short
            raise NoAnswer(_one_line(err)) from None
        return replace(_answer(response.status, response.headers, response.data), left_at=left_at)


def _answer(status: int, headers: Any, data: bytes) -> Answer:
    try:
        document = json.loads(data) if data else {}
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    if status == 200:
        return Answer(str(document.get("MessageId") or ""), None)
    code = str(headers.get("x-amzn-ErrorType", "") or document.get("__type", "") or document.get("code", ""))
    code = code.split(":", 1)[0].rsplit("#", 1)[-1]
    text = str(document.get("message") or document.get("Message") or data[:200].decode(errors="replace"))
    return Answer(None, {"Error": {"Code": code, "Message": text}, "ResponseMetadata": {"HTTPStatusCode": status}})


def _reason(err: Exception) -> str:
    """The innermost words of a urllib3 error (its wrapped OS error's, where there is one)."""
    for cause in err.args[::-1]:
        if isinstance(cause, BaseException):
            return _one_line(cause)
    text = _one_line(err)
    return text.split(": ", 1)[-1] if "Failed to establish" in text else text


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
