"""Our SigV4 signer against botocore's: the same requests get the same Authorization, byte for byte."""

from __future__ import annotations

import datetime
import random
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from newsletter.transports.connection_pool import ConnectionPool
from newsletter.transports.sigv4 import PostSigner, SigningCredentials

ENDPOINTS = [
    "https://email.us-east-1.amazonaws.com",
    "https://email.eu-west-1.amazonaws.com:443",
    "http://127.0.0.1:8421",
    "http://localhost:80/prefix",
    "https://[::1]:9443/some path/~x",
]


def _botocore_headers(
    url: str, body: bytes, credentials: SigningCredentials, region: str, service: str, at: datetime.datetime
) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    frozen = Credentials(credentials.access_key, credentials.secret_key, credentials.token).get_frozen_credentials()
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: at.replace(tzinfo=None)
    try:
        botocore.auth.SigV4Auth(frozen, service, region).add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    return dict(request.headers.items())


@pytest.mark.parametrize("seed", range(40))
def test_our_signature_is_botocores(seed: int) -> None:
    rng = random.Random(seed)
    base = rng.choice(ENDPOINTS)
    url = base + "/v2/email/outbound-emails"
    body = rng.randbytes(rng.choice([0, 1, 1000, 150_000]))
    credentials = SigningCredentials(
        "AKIA" + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16)),
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789+/", k=40)),
        rng.choice([None, "FwoGZXIvYXdzE" + "x" * rng.randint(1, 300)]),
    )
    region = rng.choice(["us-east-1", "eu-west-1", "ap-northeast-2"])
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=rng.randint(0, 10**8))
    pool = ConnectionPool(url, size=1, connect_timeout=1, read_timeout=1)
    ours = PostSigner(region, "ses").headers(credentials, pool.host, urlsplit(url).path, body, "application/json", at)
    theirs = _botocore_headers(url, body, credentials, region, "ses", at)
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token")


def test_the_days_key_is_kept_and_changes_with_the_day_and_the_secret() -> None:
    signer = PostSigner("us-east-1", "ses")
    one = SigningCredentials("AKID", "secret-one")
    day = datetime.datetime(2026, 12, 3, 23, 59, 59, tzinfo=datetime.UTC)
    for at, credentials in [
        (day, one),
        (day + datetime.timedelta(seconds=2), one),  # the next day
        (day + datetime.timedelta(seconds=3), SigningCredentials("AKID", "secret-two")),  # rotated credentials
    ]:
        ours = signer.headers(credentials, "h", "/p", b"{}", "application/json", at)
        theirs = _botocore_headers("https://h/p", b"{}", credentials, "us-east-1", "ses", at)
        assert ours["Authorization"] == theirs["Authorization"]
