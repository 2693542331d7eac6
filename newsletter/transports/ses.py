"""The Amazon SES transport: boto3 `sesv2` SendEmail with our raw MIME message, one recipient each.

One attempt per send(), no retries or sleeps here: botocore's retries are off (`total_max_attempts=1`: its
`max_attempts` counts retries, not attempts) and the send loop retries through its rate limiter. What SES
said becomes a SendStatus: throttling is THROTTLED, a 5xx or a connection that never opened is RETRY, a
request that left without an answer is AMBIGUOUS (SES may have taken it), MessageRejected is FAILED. A paused
or suspended account, an unverified MAIL FROM domain, a missing configuration set or the spent daily quota
stop the whole send. One boto3 client serves every thread (boto3 clients are thread-safe).
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import MissingExtraError, TransportError
from .base import OutgoingMessage, SendQuota, SendResult, SendStatus

THROTTLING = {"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"}
THROTTLING_TEXT = "Maximum sending rate exceeded"
NOT_TAKEN = {"ServiceUnavailable", "InternalFailure", "InternalServerError", "InternalError"}  # SES's 5xx words
STOPPING = {
    "SendingPausedException": "sending is paused for this account or configuration set",
    "AccountSuspendedException": "the SES account is suspended",
    "MailFromDomainNotVerifiedException": "the MAIL FROM domain is not verified",
    "NotFoundException": "the configuration set does not exist",
}
DAILY_QUOTA = "Daily message quota exceeded"
CREDENTIALS_HINT = "check the AWS credentials and region"
# SES answers SendEmail in well under a second; 30 s leaves room for a congested link without holding a
# worker thread for minutes. A read timeout is AMBIGUOUS either way (SES may have taken the message), so a
# longer wait would only turn fewer of them into answers, at the price of a slower stop.
READ_TIMEOUT = 30
CONNECT_TIMEOUT = 10


class SesTransport:
    """Sends each message with sesv2 SendEmail (Raw content); `send` is safe to call from many threads."""

    name = "ses"

    def __init__(
        self, client: Any, *, configuration_set: str = "", v1_client: Any = None, max_in_flight: int = 64
    ) -> None:
        self.client = client
        self.v1_client = v1_client
        self.configuration_set = configuration_set
        self.max_in_flight = max_in_flight

    @classmethod
    def from_settings(cls, settings: Settings) -> SesTransport:
        pool = settings.ses.max_in_flight
        return cls(
            aws_client(settings, "sesv2", pool=pool),
            configuration_set=settings.ses.configuration_set,
            v1_client=aws_client(settings, "ses"),
            max_in_flight=pool,
        )

    def quota(self) -> SendQuota:
        """The account's sending quota (GetAccount; the v1 GetSendQuota where v2's is missing)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_account()["SendQuota"]
        except BotoCoreError as err:  # no connection, no credentials: v1 would only fail the same way
            raise _quota_error(err) from None
        except (ClientError, KeyError, NotImplementedError) as err:
            if self.v1_client is None:
                raise _quota_error(err) from None
            try:
                answer = self.v1_client.get_send_quota()
            except (ClientError, BotoCoreError) as v1_err:
                raise _quota_error(v1_err) from None
        daily = float(answer.get("Max24HourSend", -1))
        return SendQuota(
            float(answer["MaxSendRate"]), None if daily < 0 else daily, float(answer.get("SentLast24Hours", 0))
        )

    def send(self, message: OutgoingMessage) -> SendResult:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            ConnectTimeoutError,
            EndpointConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
            ProxyConnectionError,
        )

        request: dict[str, Any] = {
            "FromEmailAddress": message.sender,
            "Destination": {"ToAddresses": [message.recipient]},
            "Content": {"Raw": {"Data": message.raw}},
            "EmailTags": [{"Name": "issue", "Value": _tag(message.issue)}, {"Name": "edition", "Value": message.lang}],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            answer = self.client.send_email(**request)
        except ClientError as err:
            return _answer(err.response)
        except (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError) as err:  # nothing was sent
            return SendResult(SendStatus.RETRY, error=f"SES connection not opened: {err}")
        except (HTTPClientError, ConnectionError) as err:
            # a read timeout, a connection closed or reset, a TLS error (urllib3 reports one in the answer as it
            # does one in the handshake) after the request may have been written: SES may have taken it
            return SendResult(
                SendStatus.AMBIGUOUS, error=f"SES gave no answer, the message may have been taken: {_one_line(err)}"
            )
        except (NoCredentialsError, PartialCredentialsError) as err:
            raise TransportError("ses", str(err), CREDENTIALS_HINT) from None
        except BotoCoreError as err:  # refused before anything left (a parameter botocore will not send)
            return SendResult(SendStatus.FAILED, error=f"SES request not sent: {_one_line(err)}")
        return SendResult(SendStatus.SENT, message_id=answer.get("MessageId"))

    def close(self) -> None:
        return None


def _answer(response: dict[str, Any]) -> SendResult:
    """What an SES error answer means for this message; raises TransportError when the whole send must stop."""
    code = response.get("Error", {}).get("Code", "")
    text = response.get("Error", {}).get("Message", "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    said = f"SES {code}: {text}"
    if code in STOPPING:
        raise TransportError(
            "ses", f"{STOPPING[code]} ({said})", "fix it in the SES console, then run the same command to resume"
        )
    if DAILY_QUOTA in text:
        raise TransportError(
            "ses", f"the daily sending quota is used up ({said})", "run the same command tomorrow to resume"
        )
    if code in THROTTLING or status == 429 or THROTTLING_TEXT in text:
        return SendResult(SendStatus.THROTTLED, error=said)
    if code in NOT_TAKEN or status >= 500:
        return SendResult(SendStatus.RETRY, error=said)
    return SendResult(SendStatus.FAILED, error=said)


def _quota_error(err: Exception) -> TransportError:
    return TransportError("ses", f"cannot read the sending quota: {_one_line(err)}", CREDENTIALS_HINT)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def aws_client(settings: Settings, service: str, *, pool: int = 10) -> Any:
    """A boto3 client for SES or SQS in the configured region (and endpoint), with botocore's retries off and
    connections for `pool` requests at once, kept alive."""
    try:
        import boto3
        from botocore.config import Config
    except ModuleNotFoundError:
        raise MissingExtraError(f"Amazon {service.upper()}", "ses") from None
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        max_pool_connections=pool,
        tcp_keepalive=True,
    )
    options: dict[str, Any] = {"region_name": settings.ses.region, "config": config}
    if settings.ses.endpoint_url:
        options["endpoint_url"] = settings.ses.endpoint_url
    return boto3.client(service, **options)


def _tag(value: str) -> str:
    """SES tag values allow ASCII letters, digits, '_' and '-' only."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in value)[:256]
