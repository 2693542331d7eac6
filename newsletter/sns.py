"""SNS HTTP deliveries: is this message from a configured topic, and signed by SNS? No store, no SES here.

The order is the point: the envelope's shape and its TopicArn are checked before anything is fetched, so a
message from a topic that is not configured costs no outbound request; the signing certificate then must come
from `https://sns.<the topic's region>.amazonaws.com[.cn]/`, and the signature (SignatureVersion 1: SHA1,
2: SHA256) must match the canonical string SNS specifies.
"""

from __future__ import annotations

import base64
import http.client
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .config import SNS_TOPIC_ARN

# Keys in the canonical string, in SNS's (alphabetical) order; Subject only when the message has one.
SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
ENVELOPE_KEYS = ("Signature", "SignatureVersion", "SigningCertURL")  # required besides the signed ones
OPTIONAL_KEYS = {"Subject"}
MAX_CERTIFICATE = 64 * 1024  # an SNS signing certificate is about 2 KB
NO_TOPIC = (
    "no SNS topic is configured, so no notification is trusted "
    "(set topic_arn in [tool.newsletter.ses] of pyproject.toml to the ARN of your SES notification topic)"
)
MAX_CACHED_CERTIFICATES = 32  # SNS rotates certificates rarely; a flood of new URLs cannot grow the cache
# A certificate URL that could not be fetched (or held no RSA certificate) is not asked again for this long: a
# forged message that names the configured topic costs one request a minute, not one each. SNS retries a delivery
# it got no 2xx for over hours, so a real message is verified on a later try.
FAILED_FETCH_SECONDS = 60.0
_FAILED = "failed: "  # the prefix of a failed URL's entry in the cache (its value: until when it is not fetched)


class NotificationError(ValueError):
    """A notification that cannot be read (the sender's mistake or malice: 400 over HTTP)."""


class UntrustedNotification(NotificationError):
    """A readable notification from a source that is not trusted (403 over HTTP; refused from a queue)."""


def check_envelope(message: Any) -> dict[str, str]:
    """The SNS envelope's fields, each checked to be a string; raise NotificationError if it is not one."""
    if not isinstance(message, dict):
        raise NotificationError("the SNS message is not a JSON object")
    kind = message.get("Type")
    if not isinstance(kind, str) or kind not in SIGNED_KEYS:
        raise NotificationError(f"unknown SNS message type {_shown(kind)}")
    fields: dict[str, str] = {}
    for key in (*SIGNED_KEYS[kind], *ENVELOPE_KEYS):
        value = message.get(key)
        if value is None and key in OPTIONAL_KEYS:
            continue  # absent from the canonical string too
        if not isinstance(value, str):
            problem = "is missing" if value is None else f"is not a string but {type(value).__name__}"
            raise NotificationError(f"the SNS {kind} {key} {problem}")
        fields[key] = value
    return fields


def topic_region(topic_arn: str) -> tuple[str, str]:
    """(partition, region) of a topic ARN already checked against SNS_TOPIC_ARN."""
    _, partition, _, region, *_ = topic_arn.split(":")
    return partition, region


def sns_host(topic_arn: str) -> str:
    """The only host this topic's certificate and subscription URLs may name: sns.<region>.amazonaws.com[.cn]."""
    partition, region = topic_region(topic_arn)
    return f"sns.{region}.amazonaws.com" + (".cn" if partition == "aws-cn" else "")


def check_topic(fields: dict[str, str], topics: tuple[str, ...]) -> None:
    """Refuse a message whose TopicArn is not one of `topics` (none configured: refuse every message)."""
    if not topics:
        raise UntrustedNotification(NO_TOPIC)
    if fields["TopicArn"] not in topics or not SNS_TOPIC_ARN.match(fields["TopicArn"]):
        raise UntrustedNotification(f"topic {_shown(fields['TopicArn'])} is not the configured topic_arn")


def check_sns_url(url: str, topic_arn: str, what: str) -> None:
    """Refuse a URL that is not https://<the topic's SNS host>/… (no other port, no user part, no spaces or
    control characters)."""
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise UntrustedNotification(f"the {what} {_shown(url)} is not a URL: {err}") from None
    host = sns_host(topic_arn)
    if parts.scheme != "https" or parts.netloc != host or not url.isprintable() or " " in url:
        raise UntrustedNotification(f"the {what} {_shown(url)} is not on https://{host}/ (the topic's region)")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: the host was checked, the place it points to was not."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def fetch_url(url: str) -> bytes:
    """GET `url` (at most MAX_CERTIFICATE bytes, no redirects); raise NotificationError when it cannot be
    fetched. Callers check the host first."""
    try:
        with _OPENER.open(url, timeout=10) as answer:
            data: bytes = answer.read(MAX_CERTIFICATE + 1)
    except (OSError, http.client.HTTPException, ValueError) as err:  # URLError and HTTPError are OSErrors
        raise NotificationError(f"could not fetch {_shown(url)}: {_shown(str(err))}") from None
    if len(data) > MAX_CERTIFICATE:
        raise NotificationError(f"{_shown(url)} answered more than {MAX_CERTIFICATE} bytes")
    return data


def fetched(fetch: Callable[[str], bytes], url: str) -> bytes:
    """`fetch(url)`, with the network's errors (of any injected fetch) as NotificationError."""
    try:
        return fetch(url)
    except (OSError, http.client.HTTPException) as err:  # URLError and HTTPError are OSErrors
        raise NotificationError(f"could not fetch {_shown(url)}: {_shown(str(err))}") from None


def verify_signature(
    fields: dict[str, str], fetch: Callable[[str], bytes], cache: dict[str, Any], topics: tuple[str, ...]
) -> None:
    """Check the topic, then the certificate URL, then the signature; raise NotificationError (or
    UntrustedNotification) if the message is not from a configured topic and signed by SNS."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    check_topic(fields, topics)  # before anything is fetched
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(fields["SignatureVersion"])  # noqa: S303 - v1 is SHA1
    if algorithm is None:
        raise UntrustedNotification(f"unknown SignatureVersion {_shown(fields['SignatureVersion'])}")
    cert_url = fields["SigningCertURL"]
    check_sns_url(cert_url, fields["TopicArn"], "SigningCertURL")
    try:
        signature = base64.b64decode(fields["Signature"], validate=True)
    except ValueError:
        raise UntrustedNotification("the Signature is not base64") from None
    key = cache.get(cert_url)
    if key is None:
        if time.monotonic() < cache.get(_FAILED + cert_url, 0.0):
            raise NotificationError(
                f"{_shown(cert_url)} failed lately: not fetched again for {FAILED_FETCH_SECONDS:g} s"
            )
        try:
            pem = fetched(fetch, cert_url)
            try:
                key = x509.load_pem_x509_certificate(pem).public_key()
            except ValueError as err:
                raise UntrustedNotification(f"{_shown(cert_url)} is not a PEM certificate: {err}") from None
            if not isinstance(key, rsa.RSAPublicKey):
                raise UntrustedNotification(f"{_shown(cert_url)} does not hold an RSA key")
        except NotificationError:
            _keep(cache, _FAILED + cert_url, time.monotonic() + FAILED_FETCH_SECONDS)
            raise
        _keep(cache, cert_url, key)
    canonical = "".join(f"{name}\n{fields[name]}\n" for name in SIGNED_KEYS[fields["Type"]] if name in fields)
    try:
        key.verify(signature, canonical.encode(), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError):
        raise UntrustedNotification("the signature does not match") from None


def _keep(cache: dict[str, Any], name: str, value: Any) -> None:
    """Put `value` in the cache, emptied first when full (a flood of new URLs cannot grow it)."""
    if len(cache) >= MAX_CACHED_CERTIFICATES:
        cache.clear()
    cache[name] = value


def _shown(value: Any) -> str:
    """A value for a log line: its repr, at most 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
