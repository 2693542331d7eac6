"""The Amazon SES transport: sesv2 SendEmail with our raw MIME message, one recipient each.

The quota comes from boto3's client (GetAccount); each SendEmail is one signed request on a pool of kept-alive
connections (ses_request.py: botocore's credentials, our SigV4 signer and http.client's connections).

One attempt per send(), no retries or sleeps here: botocore's retries are off (`total_max_attempts=1`: its
`max_attempts` counts retries, not attempts) and the send loop retries through its rate limiter. What SES
said becomes a SendStatus: throttling is THROTTLED, a 5xx or a connection that never opened is RETRY, a
request that left without an answer is AMBIGUOUS (SES may have taken it), MessageRejected is FAILED. A paused
or suspended account, an unverified MAIL FROM domain, a missing configuration set or the spent daily quota
stop the whole send. One boto3 client serves every thread (boto3 clients are thread-safe).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..config import Settings
from ..errors import MissingExtraError, TransportError
from ..link_tags import issue_tag
from .base import OutgoingMessage, SendQuota, SendResult, SendStatus
from .ses_request import NoAnswer, NotOpened, SendEmailRequest

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
# Open and click tracking per message (sesv2 SendEmail ConfigurationOverrides.Tracking), whatever the configuration
# set says: on only for a recipient who consented.
TRACKED = {"Tracking": {"OpenTrackingEnabled": "ENABLED", "ClickTrackingEnabled": "ENABLED"}}
UNTRACKED = {"Tracking": {"OpenTrackingEnabled": "DISABLED", "ClickTrackingEnabled": "DISABLED"}}
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
        self, client: Any, *, configuration_set: str = "", v1_client: Any = None, max_in_flight: int = 128
    ) -> None:
        self.client = client
        self.v1_client = v1_client
        self.configuration_set = configuration_set
        self.max_in_flight = max_in_flight
        self.request = _send_email_request(client, max_in_flight)

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
        fields: dict[str, Any] = {
            "FromEmailAddress": message.sender,
            "Destination": {"ToAddresses": [message.recipient]},
            "EmailTags": [
                {"Name": "issue", "Value": issue_tag(message.issue)},
                {"Name": "edition", "Value": message.lang},
            ],
            "ConfigurationOverrides": TRACKED if message.tracking else UNTRACKED,
        }
        if self.configuration_set:
            fields["ConfigurationSetName"] = self.configuration_set
        try:
            answer = self.request.send(fields, message.pieces)
        except NotOpened as err:  # nothing was sent
            return SendResult(SendStatus.RETRY, error=f"SES connection not opened: {err}")
        except NoAnswer as err:
            # a read timeout, a connection closed or reset, a TLS error after the request may have been written:
            # SES may have taken it
            return SendResult(SendStatus.AMBIGUOUS, error=f"SES gave no answer ({err}); it may have taken the message")
        if answer.error is not None:
            return replace(_answer(answer.error), left_at=answer.left_at)
        return SendResult(SendStatus.SENT, message_id=answer.message_id, left_at=answer.left_at)

    def close(self) -> None:
        """Close the idle SendEmail connections (a forked worker's are its own)."""
        self.request.close()


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


def _send_email_request(client: Any, connections: int) -> SendEmailRequest:
    """The SendEmail request for `client`'s endpoint and region, signed with the credentials boto3 finds."""
    import boto3

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise TransportError("ses", "no AWS credentials were found", CREDENTIALS_HINT)
    config = client.meta.config
    return SendEmailRequest(
        client.meta.endpoint_url,
        client.meta.region_name,
        credentials,
        connections=connections,
        connect_timeout=config.connect_timeout or CONNECT_TIMEOUT,
        read_timeout=config.read_timeout or READ_TIMEOUT,
    )


def _quota_error(err: Exception) -> TransportError:
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    unreachable = isinstance(err, EndpointConnectionError | ConnectTimeoutError)
    hint = "check the network, the region and NEWSLETTER_SES_ENDPOINT_URL" if unreachable else CREDENTIALS_HINT
    return TransportError("ses", f"cannot read the sending quota: {_one_line(err)}", hint)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def aws_client(settings: Settings, service: str, *, pool: int = 10) -> Any:
    """A boto3 client for SES or SQS in the configured region (and endpoint), with botocore's retries off and
    connections for `pool` requests at once, kept alive."""
    try:
        import boto3
        from botocore.config import Config
    except ModuleNotFoundError as err:  # part of the normal install: this environment lost it
        package = (err.name or "boto3").split(".")[0]
        raise MissingExtraError(f"Amazon {service.upper()}", needs=f"the {package} package, which is missing") from None
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
