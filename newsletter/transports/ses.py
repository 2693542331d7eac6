"""The Amazon SES transport: boto3 `sesv2` SendEmail with our raw MIME message, one recipient each.

Throttling (429 TooManyRequests, "Maximum sending rate exceeded") and 5xx answers are retried here
with exponential backoff and jitter, never counted as sent; botocore's own retries are off
(`total_max_attempts=1`: its `max_attempts` counts retries, not attempts) so every attempt is seen.
MessageRejected fails one recipient; a paused or suspended account, an unverified sender domain or a
missing configuration set stops the whole send.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..errors import MissingExtraError, TransportError
from .base import OutgoingMessage, SendResult, SendStatus

RETRYABLE = {
    "TooManyRequestsException",
    "LimitExceededException",
    "Throttling",
    "ThrottlingException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
}
STOPPING = {
    "SendingPausedException": "sending is paused for this account or configuration set",
    "AccountSuspendedException": "the SES account is suspended",
    "MailFromDomainNotVerifiedException": "the MAIL FROM domain is not verified",
    "NotFoundException": "the configuration set does not exist",
}
DAILY_QUOTA = "Daily message quota exceeded"


@dataclass(frozen=True)
class SendQuota:
    """SES's limits: per second, per 24 hours (None: unlimited), and what was sent in the last 24 hours."""

    max_send_rate: float
    max_24_hour_send: float | None
    sent_last_24_hours: float

    @property
    def remaining(self) -> float | None:
        if self.max_24_hour_send is None:
            return None
        return max(0.0, self.max_24_hour_send - self.sent_last_24_hours)


class SesTransport:
    """Sends each message with sesv2 SendEmail (Raw content)."""

    name = "ses"

    def __init__(
        self,
        client: Any,
        *,
        configuration_set: str = "",
        attempts: int = 8,
        base_delay: float = 0.2,
        max_delay: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        v1_client: Any = None,
    ) -> None:
        self.client = client
        self.v1_client = v1_client
        self.configuration_set = configuration_set
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.retries = 0  # throttled or failed attempts that were tried again

    @classmethod
    def from_settings(cls, settings: Settings) -> SesTransport:
        return cls(
            aws_client(settings, "sesv2"),
            configuration_set=settings.ses.configuration_set,
            v1_client=aws_client(settings, "ses"),
        )

    def quota(self) -> SendQuota:
        """The account's sending quota (GetAccount; the v1 GetSendQuota where v2's is missing)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_account()["SendQuota"]
        except (ClientError, BotoCoreError, KeyError, NotImplementedError):
            if self.v1_client is None:
                raise
            try:
                answer = self.v1_client.get_send_quota()
            except (ClientError, BotoCoreError) as err:
                raise TransportError(
                    "ses", f"cannot read the sending quota: {err}", "check the AWS credentials and region"
                ) from None
        daily = float(answer.get("Max24HourSend", -1))
        return SendQuota(
            float(answer["MaxSendRate"]), None if daily < 0 else daily, float(answer.get("SentLast24Hours", 0))
        )

    def send(self, message: OutgoingMessage) -> SendResult:
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

        request: dict[str, Any] = {
            "FromEmailAddress": message.sender,
            "Destination": {"ToAddresses": [message.recipient]},
            "Content": {"Raw": {"Data": message.raw}},
            "EmailTags": [{"Name": "issue", "Value": _tag(message.issue)}, {"Name": "edition", "Value": message.lang}],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        last_error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                answer = self.client.send_email(**request)
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                text = err.response.get("Error", {}).get("Message", "")
                status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code in STOPPING:
                    raise TransportError(
                        "ses",
                        f"{STOPPING[code]} (SES {code}: {text})",
                        "fix it in the SES console, then run the same command to resume",
                    ) from None
                if DAILY_QUOTA in text:
                    raise TransportError(
                        "ses",
                        f"the daily sending quota is used up (SES {code}: {text})",
                        "run the same command tomorrow to resume",
                    ) from None
                if code in RETRYABLE or status == 429 or status >= 500:
                    last_error = f"SES {code}: {text}"
                    self._backoff(attempt)
                    continue
                return SendResult(SendStatus.FAILED, error=f"SES {code}: {text}")
            except (ConnectionError, ReadTimeoutError, BotoCoreError) as err:
                # a timeout may come after SES accepted the message: a retry can repeat it (in flight)
                last_error = f"SES connection: {err}"
                self._backoff(attempt)
                continue
            return SendResult(SendStatus.SENT, message_id=answer.get("MessageId"))
        return SendResult(SendStatus.DEFERRED, error=f"{last_error} (after {self.attempts} attempts)")

    def _backoff(self, attempt: int) -> None:
        """Full jitter: sleep a random time up to base × 2^attempt, capped."""
        if attempt >= self.attempts:
            return
        self.retries += 1
        self.sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt)))

    def close(self) -> None:
        return None


def aws_client(settings: Settings, service: str) -> Any:
    """A boto3 client for SES or SQS in the configured region (and endpoint), with botocore's retries off."""
    try:
        import boto3
        from botocore.config import Config
    except ModuleNotFoundError:
        raise MissingExtraError(f"Amazon {service.upper()}", "ses") from None
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=30)
    options: dict[str, Any] = {"region_name": settings.ses.region, "config": config}
    if settings.ses.endpoint_url:
        options["endpoint_url"] = settings.ses.endpoint_url
    return boto3.client(service, **options)


def _tag(value: str) -> str:
    """SES tag values allow ASCII letters, digits, '_' and '-' only."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in value)[:256]
