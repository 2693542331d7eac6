"""`newsletter doctor` against real peers on 127.0.0.1: a dnslib DNS server (tests/dns_server.py), moto's SES and a
small GetEmailIdentity stand-in (moto cannot say "verified" or give Easy DKIM tokens), the web app under waitress,
and HTTP(S) hosts that answer 200, 404, 500, a redirect, nothing, or refuse the connection."""

from __future__ import annotations

import http.server
import json
import secrets
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from click.testing import Result

from newsletter.doctor.alignment import aligned, org_domain
from newsletter.doctor.findings import Status
from newsletter.doctor.secret import check_secret_key
from newsletter.tokens import DEVELOPMENT_SECRET

from .conftest import WEB_SECRET, ThreadedHttpServer, WebServer, free_port, make_certificate, write_issue
from .dns_server import DnsServer, Records, silent_nameserver

FROM = "weekly@papers.example.com"  # the sample publication's From address
TOKENS = ["tok1abc", "tok2def", "tok3ghi"]
AMAZONSES_SPF = "v=spf1 ip4:199.255.192.0/22 ip4:199.127.232.0/22 ip4:54.240.0.0/18 -all"


def easy_dkim_records(domain: str) -> Records:
    return {f"{t}._domainkey.{domain}": [("CNAME", f"{t}.dkim.amazonses.com")] for t in TOKENS}


GOOD: Records = {
    "bounce.papers.example.com": [("TXT", "v=spf1 include:amazonses.com ~all")],
    "amazonses.com": [("TXT", AMAZONSES_SPF)],
    **easy_dkim_records("papers.example.com"),
    "_dmarc.example.com": [("TXT", "v=DMARC1; p=none; rua=mailto:dmarc@example.com")],
}


def identity(
    kind: str = "DOMAIN",
    *,
    verified: bool = True,
    dkim: bool = True,
    status: str = "SUCCESS",
    mail_from: str = "bounce.papers.example.com",
    origin: str = "AWS_SES",
) -> dict[str, Any]:
    """A GetEmailIdentity answer shaped like SES's (sesv2 API reference)."""
    answer: dict[str, Any] = {
        "IdentityType": kind,
        "FeedbackForwardingStatus": True,
        "VerifiedForSendingStatus": verified,
        "VerificationStatus": "SUCCESS" if verified else "PENDING",
        "DkimAttributes": {
            "SigningEnabled": dkim,
            "Status": status,
            "Tokens": TOKENS if kind != "EMAIL_ADDRESS" else [],
            "SigningAttributesOrigin": origin,
            "NextSigningKeyLength": "RSA_2048_BIT",
            "CurrentSigningKeyLength": "RSA_2048_BIT",
        },
        "Policies": {},
        "Tags": [],
    }
    if mail_from:
        answer["MailFromAttributes"] = {
            "MailFromDomain": mail_from,
            "MailFromDomainStatus": "SUCCESS",
            "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
        }
    return answer


class IdentityServer:
    """sesv2 GetEmailIdentity over HTTP on 127.0.0.1: GET /v2/email/identities/<name> answers from `identities`,
    404 NotFoundException otherwise. Keeps the names asked for."""

    def __init__(self, identities: dict[str, dict[str, Any]]) -> None:
        self.identities = identities
        self.asked: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                prefix = "/v2/email/identities/"
                name = unquote(self.path.split("?")[0][len(prefix) :]) if self.path.startswith(prefix) else ""
                owner.asked.append(name)
                if name in owner.identities:
                    status, body, headers = 200, owner.identities[name], {}
                else:
                    status, body = 404, {"message": f"Email identity {name} does not exist."}
                    headers = {"x-amzn-ErrorType": "NotFoundException"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.handler = Handler

    def __enter__(self) -> IdentityServer:
        self.http = ThreadedHttpServer(self.handler)
        self.url = self.http.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()


class OneClickHost:
    """An HTTPS host on 127.0.0.1 (a certificate made here, trusted through SSL_CERT_FILE) that answers a POST with
    200 and a GET with a page holding a POST form, as a compliant unsubscribe endpoint does. Keeps the requests."""

    def __init__(self, folder: Path) -> None:
        from cryptography.hazmat.primitives import serialization

        key, certificate = make_certificate("127.0.0.1", ip_address="127.0.0.1")
        self.cert_file = folder / "cert.pem"
        self.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file = folder / "key.pem"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        self.requests: list[tuple[str, str, str, bytes]] = []  # (method, path, content type, body)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.requests.append(("POST", self.path, self.headers.get("Content-Type", ""), body))
                self._answer(b"<p>You are unsubscribed.</p>")

            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(("GET", self.path, "", b""))
                self._answer(b'<form method="post"><button>Unsubscribe</button></form>')

            def _answer(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.handler = Handler
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(self.cert_file, key_file)

    def __enter__(self) -> OneClickHost:
        self.http = ThreadedHttpServer(self.handler, self.tls)
        self.url = self.http.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()


def serve_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Put the archive and the web app (so the List-Unsubscribe URL) at `url`."""
    monkeypatch.setenv("NEWSLETTER_BASE_URL", url)
    monkeypatch.setenv("NEWSLETTER_APP_URL", url)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A strong key, AWS test credentials, and an unsubscribe host that refuses at once (tests that look at it
    set their own)."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", secrets.token_urlsafe(32))
    serve_at(monkeypatch, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def one_click_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OneClickHost]:
    with OneClickHost(tmp_path) as host:
        monkeypatch.setenv("SSL_CERT_FILE", str(host.cert_file))
        serve_at(monkeypatch, host.url)
        yield host


def lines(result: Result) -> dict[str, str]:
    """check name → its whole line, from the command's standard output."""
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        status, _, rest = line.partition("  ")
        if status in {"pass", "warn", "fail"}:
            found[rest.split(":", 1)[0]] = line
    return found


def doctor(run: Callable[..., Result], dns: DnsServer | str, *args: str) -> Result:
    address = dns if isinstance(dns, str) else dns.address
    return run("doctor", "--nameserver", address, "--timeout", "2", *args)


def ses_doctor(run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, endpoint: str, dns: DnsServer) -> Result:
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", endpoint)
    return doctor(run, dns, "--transport", "ses")


# ---------------------------------------------------------------------------------------------------- the key


@pytest.mark.parametrize(
    ("value", "status", "words"),
    [
        (None, Status.FAIL, "is not set"),
        (DEVELOPMENT_SECRET, Status.FAIL, "public development secret"),
        ("short-key-123", Status.FAIL, "at least 16"),
        ("\udcff" * 40, Status.FAIL, "holds bytes that are not UTF-8 text"),
        ("Kq3vT9xZp2m7b4nW\nKq3vT9xZp2m7b4nW", Status.FAIL, "holds a line break or control character"),
        ("changeme-changeme-changeme-changeme", Status.WARN, "looks like a placeholder"),
        ("a" * 40, Status.WARN, "bits of randomness"),
        ("Kq3vT9xZ", Status.FAIL, "at least 16"),
        ("kq3vt9xzp2m7b4nw", Status.WARN, "bits of randomness"),  # 16 random lower-case and digits: ~83 bits
        (secrets.token_urlsafe(32), Status.PASS, "is set, 43 characters"),
    ],
)
def test_secret_key_must_be_set_long_random_and_not_a_default(value: str | None, status: Status, words: str) -> None:
    finding = check_secret_key({} if value is None else {"NEWSLETTER_SECRET_KEY": value})
    assert finding.status == status, finding
    assert words in finding.what
    assert str(finding).startswith(f"{status.value}  secret key: NEWSLETTER_SECRET_KEY ")


def test_a_key_of_bytes_that_are_not_utf8_is_one_failed_line_not_a_traceback(run, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "\udcff" * 40)  # what a non-UTF-8 environment value becomes
    with DnsServer(GOOD) as dns:
        result = doctor(run, dns, "--transport", "smtp")
    assert lines(result)["secret key"].startswith(
        "fail  secret key: NEWSLETTER_SECRET_KEY holds bytes that are not UTF-8"
    )
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_organisational_domains_follow_the_public_suffix_list() -> None:
    assert org_domain("papers.example.com") == "example.com"
    assert org_domain("news.example.co.uk") == "example.co.uk"
    assert org_domain("someone.github.io") == "someone.github.io"  # a private suffix: each user is its own
    assert aligned("example.com", "papers.example.com", "r")
    assert not aligned("example.com", "papers.example.com", "s")
    assert not aligned("example.co.uk", "other.co.uk", "r")


# ---------------------------------------------------------------------------------------------------- everything right


def test_a_ready_publication_passes_every_check_and_exits_0(
    run, monkeypatch: pytest.MonkeyPatch, one_click_host: OneClickHost
) -> None:
    with DnsServer(GOOD) as dns, IdentityServer({"papers.example.com": identity()}) as ses:
        result = ses_doctor(run, monkeypatch, ses.url, dns)
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert set(found) == {
        "secret key",
        "list headers (ko)",
        "gmail clip (ko)",
        "list headers (en)",
        "gmail clip (en)",
        "one-click unsubscribe",
        "unsubscribe page",
        "ses identity",
        "ses dkim",
        "spf",
        "dkim",
        "dmarc",
        "alignment",
    }
    assert all(line.startswith("pass  ") for line in found.values()), result.stdout
    assert found["ses identity"] == (
        f"pass  ses identity: {FROM} may send: the domain identity papers.example.com is verified in us-east-1"
    )
    assert found["ses dkim"] == "pass  ses dkim: SES signs as papers.example.com with Easy DKIM (status SUCCESS)"
    assert found["spf"] == (
        "pass  spf: bounce.papers.example.com: 'v=spf1 include:amazonses.com ~all', 1 of 10 DNS lookups"
    )
    assert found["dkim"] == (
        "pass  dkim: 3 of 3 Easy DKIM CNAME records under papers.example.com point to amazonses.com"
    )
    assert found["dmarc"].startswith(
        "pass  dmarc: _dmarc.example.com: p=none, which applies to papers.example.com (its organisational domain's)"
    )
    assert found["alignment"] == (
        "pass  alignment: From papers.example.com aligns with DKIM d=papers.example.com (relaxed); "
        "SPF's MAIL FROM bounce.papers.example.com aligns too"
    )
    assert found["one-click unsubscribe"].startswith(
        f"pass  one-click unsubscribe: POST {one_click_host.url}/unsubscribe answers 200"
    )
    assert found["unsubscribe page"].startswith("pass  unsubscribe page: GET ")
    assert found["gmail clip (ko)"].startswith("pass  gmail clip (ko): ")
    assert result.stdout.splitlines()[-1] == "doctor: 13 passed, 0 warned, 0 failed"
    # what the host got: the RFC 8058 POST, then a GET of the same link; the address is looked up first
    (post, get) = one_click_host.requests
    assert (
        post[0] == "POST"
        and post[2] == "application/x-www-form-urlencoded"
        and post[3] == b"List-Unsubscribe=One-Click"
    )
    assert get[:2] == ("GET", post[1]) and post[1].startswith("/unsubscribe?token=")
    assert ses.asked == [FROM, "papers.example.com", "example.com"]


def test_json_lists_every_finding_for_scripts(run, monkeypatch: pytest.MonkeyPatch, one_click_host) -> None:
    with DnsServer(GOOD) as dns, IdentityServer({"papers.example.com": identity()}) as ses:
        monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", ses.url)
        result = doctor(run, dns, "--transport", "ses", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["counts"] == {"pass": 13, "warn": 0, "fail": 0}
    assert {"status", "check", "what", "todo"} == set(document["checks"][0])
    assert [c["check"] for c in document["checks"]][-4:] == ["spf", "dkim", "dmarc", "alignment"]


# ---------------------------------------------------------------------------------------------------- DNS


def test_missing_records_fail_and_say_what_to_publish(run, monkeypatch: pytest.MonkeyPatch) -> None:
    with DnsServer({}) as dns, IdentityServer({"papers.example.com": identity()}) as ses:
        result = ses_doctor(run, monkeypatch, ses.url, dns)
    assert result.exit_code == 1
    found = lines(result)
    assert found["spf"] == (
        "fail  spf: bounce.papers.example.com has no SPF record "
        '(publish TXT "v=spf1 include:amazonses.com ~all" at bounce.papers.example.com)'
    )
    assert found["dkim"].startswith(
        "fail  dkim: 3 of 3 Easy DKIM CNAME records missing or wrong, first tok1abc._domainkey.papers.example.com "
        "(publish CNAME tok1abc._domainkey.papers.example.com → tok1abc.dkim.amazonses.com"
    )
    assert found["dmarc"] == (
        "fail  dmarc: no DMARC record at _dmarc.papers.example.com or _dmarc.example.com "
        '(publish TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.com" at _dmarc.example.com)'
    )
    assert result.stderr.strip().startswith("Error: doctor: ")
    assert "checks failed (fix the lines marked fail, then run it again)" in result.stderr
    assert "Traceback" not in result.output


def _with(changes: Records, *, drop: tuple[str, ...] = ()) -> Records:
    records = {name: values for name, values in GOOD.items() if name not in drop}
    records.update(changes)
    return records


WRONG = [
    (
        "spf +all",
        _with({"bounce.papers.example.com": [("TXT", "v=spf1 include:amazonses.com +all")]}),
        "spf",
        "ends with +all: anyone may send as bounce.papers.example.com",
    ),
    (
        "spf bare all",
        _with({"bounce.papers.example.com": [("TXT", "v=spf1 include:amazonses.com all")]}),
        "spf",
        "ends with all:",
    ),
    (
        "spf without amazonses",
        _with({"bounce.papers.example.com": [("TXT", "v=spf1 ip4:192.0.2.1 -all")]}),
        "spf",
        "does not include amazonses.com (add include:amazonses.com)",
    ),
    (
        "two spf records",
        _with({"bounce.papers.example.com": [("TXT", "v=spf1 include:amazonses.com ~all"), ("TXT", "v=spf1 -all")]}),
        "spf",
        "has 2 SPF records",
    ),
    (
        "include of nothing",
        _with({"bounce.papers.example.com": [("TXT", "v=spf1 include:amazonses.com include:_spf.gone.example -all")]}),
        "spf",
        "include:_spf.gone.example names _spf.gone.example, which has no SPF record(s)",
    ),
    (
        "eleven lookups",
        _with(
            {
                "bounce.papers.example.com": [
                    (
                        "TXT",
                        "v=spf1 include:amazonses.com " + " ".join(f"a:h{i}.example.com" for i in range(10)) + " -all",
                    )
                ]
            }
        ),
        "spf",
        "needs 11 DNS lookups, over SPF's limit of 10",
    ),
    (
        "dkim cname elsewhere",
        _with({"tok2def._domainkey.papers.example.com": [("CNAME", "tok2def.example.net")]}),
        "dkim",
        "1 of 3 Easy DKIM CNAME records missing or wrong, first tok2def._domainkey.papers.example.com",
    ),
    (
        "dmarc bad policy",
        _with({"_dmarc.example.com": [("TXT", "v=DMARC1; p=bogus")]}),
        "dmarc",
        "_dmarc.example.com: p='bogus' is not none, quarantine or reject (set p=none at least)",
    ),
    (
        "dmarc without p",
        _with({"_dmarc.example.com": [("TXT", "v=DMARC1; rua=mailto:d@example.com")]}),
        "dmarc",
        "_dmarc.example.com has no p= tag",
    ),
    (
        "two dmarc records",
        _with({"_dmarc.example.com": [("TXT", "v=DMARC1; p=none"), ("TXT", "v=DMARC1; p=reject")]}),
        "dmarc",
        "has 2 DMARC records",
    ),
]


@pytest.mark.parametrize(("case", "records", "check", "words"), WRONG, ids=[w[0] for w in WRONG])
def test_wrong_records_fail(run, monkeypatch: pytest.MonkeyPatch, case: str, records: Records, check: str, words: str):
    with DnsServer(records) as dns, IdentityServer({"papers.example.com": identity()}) as ses:
        result = ses_doctor(run, monkeypatch, ses.url, dns)
    line = lines(result)[check]
    assert line.startswith(f"fail  {check}: "), line
    assert words in line
    assert result.exit_code == 1


def test_a_dmarc_record_of_the_from_domain_itself_wins_over_the_organisational_one(run, monkeypatch) -> None:
    records = _with({"_dmarc.papers.example.com": [("TXT", "v=DMARC1; p=reject; rua=mailto:d@example.com")]})
    with DnsServer(records) as dns, IdentityServer({"papers.example.com": identity()}) as ses:
        result = ses_doctor(run, monkeypatch, ses.url, dns)
    assert lines(result)["dmarc"] == "pass  dmarc: _dmarc.papers.example.com: p=reject"
    assert ("_dmarc.example.com", "TXT") not in dns.resolver.queries


def test_a_name_server_that_does_not_answer_is_a_warning_that_says_so(run, monkeypatch) -> None:
    with silent_nameserver() as address, IdentityServer({"papers.example.com": identity()}) as ses:
        monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", ses.url)
        result = run("doctor", "--transport", "ses", "--nameserver", address, "--timeout", "0.3")
    found = lines(result)
    gone = f"the name server {address} did not answer within 0.3 s"
    assert (
        found["spf"]
        == f"warn  spf: could not look up bounce.papers.example.com: {gone} (check the name server, or pass --nameserver)"
    )
    assert found["dkim"].startswith(f"warn  dkim: could not look up tok1abc._domainkey.papers.example.com: {gone}")
    assert found["dmarc"].startswith(f"warn  dmarc: could not look up _dmarc.papers.example.com: {gone}")
    assert "Traceback" not in result.output


def test_without_ses_a_named_selector_is_looked_up_and_aligns(run) -> None:
    records: Records = {
        "papers.example.com": [("TXT", "v=spf1 ip4:192.0.2.1 -all")],
        "s1._domainkey.papers.example.com": [
            ("TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 300)
        ],
        "_dmarc.example.com": [("TXT", "v=DMARC1; p=quarantine; rua=mailto:d@example.com")],
    }
    with DnsServer(records) as dns:
        found = lines(doctor(run, dns, "--transport", "smtp", "--dkim-selector", "s1"))
        no_selector = lines(doctor(run, dns, "--transport", "smtp"))
    assert "ses identity" not in found
    assert found["spf"] == "pass  spf: papers.example.com: 'v=spf1 ip4:192.0.2.1 -all', 0 of 10 DNS lookups"
    assert found["dkim"] == "pass  dkim: DKIM key published at s1._domainkey.papers.example.com"
    assert found["alignment"].startswith(
        "pass  alignment: From papers.example.com aligns with DKIM d=papers.example.com"
    )
    assert no_selector["dkim"].startswith(
        "warn  dkim: no selector to look up under papers.example.com (pass --dkim-selector"
    )
    assert no_selector["alignment"].startswith("warn  alignment: which domain DKIM signs as is not known")


def test_a_revoked_dkim_key_fails(run) -> None:
    with DnsServer({"s1._domainkey.papers.example.com": [("TXT", "v=DKIM1; p=")]}) as dns:
        found = lines(doctor(run, dns, "--transport", "smtp", "--dkim-selector", "s1"))
    assert found["dkim"] == (
        "fail  dkim: s1._domainkey.papers.example.com: the key is revoked (empty p=) (publish the current key)"
    )


# ---------------------------------------------------------------------------------------------------- SES


def test_ses_on_moto_an_unknown_and_an_unverified_identity_fail(
    run, monkeypatch, moto_server: str, aws_test_credentials: None
) -> None:
    import boto3
    import requests

    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    with DnsServer(GOOD) as dns:
        unknown = lines(ses_doctor(run, monkeypatch, moto_server, dns))
        client = boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server)
        client.create_email_identity(EmailIdentity="papers.example.com")  # SES starts it unverified, DKIM not started
        unverified = ses_doctor(run, monkeypatch, moto_server, dns)
    assert unknown["ses identity"] == (
        f"fail  ses identity: no SES identity in us-east-1 covers {FROM} (create the domain identity "
        "papers.example.com in SES (us-east-1) with Easy DKIM and publish its 3 CNAME records)"
    )
    assert unknown["ses dkim"].startswith("fail  ses dkim: no SES identity signs for papers.example.com")
    found = lines(unverified)
    assert found["ses identity"].startswith(
        "fail  ses identity: papers.example.com is an SES identity in us-east-1 but not verified for sending"
    )
    assert found["ses dkim"].startswith("fail  ses dkim: DKIM signing is off for papers.example.com")
    assert found["alignment"].startswith(
        "fail  alignment: From papers.example.com aligns with neither DKIM d=amazonses.com nor SPF (amazonses.com)"
    )
    assert unverified.exit_code == 1


SES_CASES = [
    (
        "dkim off",
        {"papers.example.com": identity(dkim=False, status="NOT_STARTED", mail_from="")},
        {
            "ses dkim": "fail  ses dkim: DKIM signing is off for papers.example.com",
            "alignment": "fail  alignment: From papers.example.com aligns with neither DKIM d=amazonses.com",
        },
    ),
    (
        "dkim pending",
        {"papers.example.com": identity(status="PENDING")},
        {
            "ses dkim": "fail  ses dkim: DKIM for papers.example.com is PENDING, not SUCCESS",
            "alignment": "warn  alignment: only SPF aligns (MAIL FROM bounce.papers.example.com)",
        },
    ),
    (
        "parent domain identity",
        {"example.com": identity(mail_from="")},
        {
            "ses identity": f"pass  ses identity: {FROM} may send: the domain identity example.com is verified",
            "ses dkim": "pass  ses dkim: SES signs as example.com with Easy DKIM",
            "spf": "pass  spf: mail leaves with SES's own MAIL FROM",
            "alignment": "pass  alignment: From papers.example.com aligns with DKIM d=example.com (relaxed); "
            "SPF's MAIL FROM (amazonses.com) does not",
        },
    ),
    (
        "unverified subdomain under a verified parent",
        {
            "papers.example.com": identity(verified=False, status="PENDING", mail_from=""),
            "example.com": identity(mail_from=""),
        },
        {
            "ses identity": f"pass  ses identity: {FROM} may send: the domain identity example.com is verified",
            "ses dkim": "pass  ses dkim: SES signs as example.com with Easy DKIM",
            "alignment": "pass  alignment: From papers.example.com aligns with DKIM d=example.com (relaxed)",
        },
    ),
    (
        "address identity only",
        {FROM: identity("EMAIL_ADDRESS", mail_from="")},
        {
            "ses identity": f"pass  ses identity: {FROM} may send: the address identity {FROM} is verified",
            "ses dkim": "fail  ses dkim: only the address is an SES identity: SES signs with its own domain",
            "alignment": "fail  alignment: From papers.example.com aligns with neither DKIM d=amazonses.com",
        },
    ),
    (
        "your own key",
        {"papers.example.com": identity(origin="EXTERNAL")},
        {
            "ses dkim": "pass  ses dkim: SES signs as papers.example.com with your own key (BYODKIM)",
            "dkim": "pass  dkim: DKIM key published at tok1abc._domainkey.papers.example.com, tok2def.",
        },
    ),
]


@pytest.mark.parametrize(("case", "identities", "expected"), SES_CASES, ids=[c[0] for c in SES_CASES])
def test_ses_identity_and_easy_dkim(run, monkeypatch, case: str, identities: dict, expected: dict[str, str]) -> None:
    records = _with(easy_dkim_records("example.com"))
    if case == "your own key":  # its selectors name TXT keys, not CNAMEs to amazonses.com
        records.update({f"{t}._domainkey.papers.example.com": [("TXT", "v=DKIM1; p=MIIB")] for t in TOKENS})
    with DnsServer(records) as dns, IdentityServer(identities) as ses:
        result = ses_doctor(run, monkeypatch, ses.url, dns)
    found = lines(result)
    for check, start in expected.items():
        assert found[check].startswith(start), found[check]


def test_a_parent_identity_does_not_align_under_strict_dkim_alignment(run, monkeypatch) -> None:
    records = _with({**easy_dkim_records("example.com"), "_dmarc.example.com": [("TXT", "v=DMARC1; p=none; adkim=s")]})
    with DnsServer(records) as dns, IdentityServer({"example.com": identity(mail_from="")}) as ses:
        found = lines(ses_doctor(run, monkeypatch, ses.url, dns))
    assert found["alignment"].startswith(
        "fail  alignment: From papers.example.com aligns with neither DKIM d=example.com nor SPF (amazonses.com)"
    )


def test_an_unreachable_ses_is_a_warning_that_names_what_was_not_checked(run, monkeypatch) -> None:
    with DnsServer(GOOD) as dns:
        result = ses_doctor(run, monkeypatch, f"http://127.0.0.1:{free_port()}", dns)
    found = lines(result)
    assert found["ses identity"].startswith(
        f"warn  ses identity: could not read the SES identities of {FROM} in us-east-1: Could not connect"
    )
    assert found["spf"].startswith("warn  spf: the MAIL FROM domain is not known")
    assert (
        found["dkim"] == "warn  dkim: the SES identity could not be read, so its DKIM records are not known (see above)"
    )
    assert found["alignment"].startswith("warn  alignment: which domain DKIM signs as is not known")
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------------- unsubscribe host


def _dump(store) -> list[tuple]:
    import sqlalchemy as sa

    from newsletter.store import subscribers

    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(subscribers).order_by(subscribers.c.id))]


def test_newsletter_serve_takes_the_one_click_probe_and_changes_nothing(web, run, monkeypatch) -> None:
    from newsletter.store import add_subscriber

    server, store, _settings, _clock = web
    add_subscriber(store, "kim@example.com", lang="ko")
    before = _dump(store)
    serve_at(monkeypatch, server.url)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", WEB_SECRET.decode())
    with DnsServer(GOOD) as dns:
        found = lines(doctor(run, dns, "--transport", "smtp"))
    assert found["one-click unsubscribe"] == (
        f"pass  one-click unsubscribe: POST {server.url}/unsubscribe answers 200 to a one-click POST on a test link "
        "(RFC 8058)"
    )
    assert found["unsubscribe page"] == (
        f"pass  unsubscribe page: GET {server.url}/unsubscribe shows a page with a POST form (a GET must change nothing)"
    )
    assert found["list headers (ko)"].startswith(
        f"fail  list headers (ko): List-Unsubscribe is {server.url}/unsubscribe, not HTTPS"
    )
    assert _dump(store) == before


class _Host:
    """A WSGI app that answers /unsubscribe with one status (and a Location for a redirect), anything else 200."""

    def __init__(self, status: str, body: bytes = b"", release: threading.Event | None = None) -> None:
        self.status, self.body, self.release = status, body, release

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        if self.release is not None and environ["PATH_INFO"] == "/unsubscribe":
            self.release.wait(30)  # answers only when the test lets it (after the doctor gave up)
        headers = [("Content-Type", "text/html"), ("Content-Length", str(len(self.body)))]
        if environ["PATH_INFO"] != "/unsubscribe":  # the fixture's readiness check
            start_response("200 OK", headers)
            return [self.body]
        if self.status.startswith("30"):
            headers.append(("Location", "https://elsewhere.example/unsubscribed"))
        start_response(self.status, headers)
        return [self.body]


HOSTS = [
    (
        "404",
        _Host("404 Not Found"),
        "fail  one-click unsubscribe: POST {url}/unsubscribe answers 404: nothing takes "
        "one-click POSTs there (run newsletter serve there, or set app_url to where it runs; see the README's "
        "Deployment notes)",
    ),
    (
        "500",
        _Host("500 Internal Server Error"),
        "fail  one-click unsubscribe: POST {url}/unsubscribe answers 500: the server failed (check its log)",
    ),
    (
        "redirect",
        _Host("302 Found"),
        "fail  one-click unsubscribe: POST {url}/unsubscribe answers 302, a redirect to "
        "https://elsewhere.example/unsubscribed: mailbox providers do not follow it (answer the POST at this URL with "
        "200)",
    ),
]


@pytest.mark.parametrize(("case", "app", "expected"), HOSTS, ids=[h[0] for h in HOSTS])
def test_an_unsubscribe_host_that_does_not_take_the_post_fails(run, monkeypatch, case: str, app, expected: str):
    server = WebServer(app)
    try:
        serve_at(monkeypatch, server.url)
        with DnsServer(GOOD) as dns:
            result = doctor(run, dns, "--transport", "smtp")
    finally:
        server.close()
    assert lines(result)["one-click unsubscribe"] == expected.format(url=server.url)
    assert result.exit_code == 1


def test_a_host_that_refuses_or_never_answers_fails_with_what_happened(run, monkeypatch) -> None:
    port = free_port()
    serve_at(monkeypatch, f"http://127.0.0.1:{port}")
    with DnsServer(GOOD) as dns:
        refused = lines(doctor(run, dns, "--transport", "smtp"))
        release = threading.Event()
        server = WebServer(_Host("200 OK", b"ok", release))
        try:
            serve_at(monkeypatch, server.url)
            silent = lines(run("doctor", "--transport", "smtp", "--nameserver", dns.address, "--timeout", "0.5"))
        finally:
            release.set()
            server.close()
    assert refused["one-click unsubscribe"].startswith(
        f"fail  one-click unsubscribe: POST http://127.0.0.1:{port}/unsubscribe: connection refused (run newsletter serve"
    )
    assert "unsubscribe page" not in refused  # no second line for the same refusal
    assert silent["one-click unsubscribe"].startswith(
        f"fail  one-click unsubscribe: POST {server.url}/unsubscribe: no answer within 0.5 s"
    )


def test_a_get_page_without_a_form_is_a_warning(run, monkeypatch) -> None:
    server = WebServer(_Host("200 OK", b"<p>You are unsubscribed.</p>"))
    try:
        serve_at(monkeypatch, server.url)
        with DnsServer(GOOD) as dns:
            found = lines(doctor(run, dns, "--transport", "smtp"))
    finally:
        server.close()
    assert found["one-click unsubscribe"].startswith("pass  one-click unsubscribe: ")
    assert found["unsubscribe page"] == (
        f"warn  unsubscribe page: GET {server.url}/unsubscribe answers 200 with no POST form "
        "(make sure a GET never unsubscribes: link scanners follow every link)"
    )


# ---------------------------------------------------------------------------------------------------- the message


def test_an_issue_over_gmails_clip_size_fails(run, publication: Path) -> None:
    sections = "\n\n".join(
        f"## Paper {i}\n\n{'A long paragraph of text. ' * 60}\n\n- [link](https://example.com/{i})" for i in range(80)
    )
    write_issue(
        publication, "2099-01-04-huge.md", f"---\ntitle: Huge\ndate: 2099-01-04\nsummary: big\n---\n\n{sections}\n"
    )
    with DnsServer(GOOD) as dns:
        result = doctor(run, dns, "--transport", "smtp")
    line = lines(result)["gmail clip (ko)"]
    assert line.startswith("fail  gmail clip (ko): issues/2099-01-04-huge.md: ")
    assert "bytes of HTML; Gmail clips over 102,000 (shorten the issue or split it" in line
    assert result.exit_code == 1


def test_without_an_issue_the_message_is_a_warning_and_a_broken_one_fails(run, publication: Path) -> None:
    for path in (publication / "issues").glob("*.md"):
        path.unlink()
    with DnsServer(GOOD) as dns:
        empty = lines(doctor(run, dns, "--transport", "smtp"))
        write_issue(publication, "2099-01-04-bad.md", "---\ntitle: [unclosed\ndate: 2099-01-04\n---\n")
        broken = doctor(run, dns, "--transport", "smtp")
    assert empty["message"] == (
        "warn  message: issues/ has no issue that is not a draft (write one and run doctor again)"
    )
    assert lines(broken)["message"].startswith("fail  message: cannot be built: issues/2099-01-04-bad.md")
    assert broken.exit_code == 1 and "Traceback" not in broken.output


# ---------------------------------------------------------------------------------------------------- usage


@pytest.mark.parametrize("value", ["a b", "", "s1._domainkey.example.com/", "-s1", "s1..s2", "셀렉터", "x" * 64])
def test_a_bad_dkim_selector_is_a_usage_error(run, value: str) -> None:
    result = run("doctor", "--dkim-selector", value)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert "--dkim-selector" in result.stderr and "is not a DKIM selector" in result.stderr, result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["dns.example.com", "127.0.0.1:99999", "[::1]:x"])
def test_a_bad_nameserver_is_a_usage_error(run, value: str) -> None:
    result = run("doctor", "--nameserver", value)
    assert result.exit_code == 1 and result.stderr.startswith("Error: newsletter doctor --nameserver: ")
    assert "--nameserver" in result.stderr and "Traceback" not in result.output


def test_newsletter_serve_with_another_key_fails_the_one_click_check(web, run, monkeypatch) -> None:
    """serve answers a correctly signed test link with its page, so a refusal means the keys differ."""
    server, store, _settings, _clock = web
    serve_at(monkeypatch, server.url)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "another-key-than-the-web-apps-" + "x" * 20)
    with DnsServer(GOOD) as dns:
        found = lines(doctor(run, dns, "--transport", "smtp"))
    assert found["one-click unsubscribe"] == (
        f"fail  one-click unsubscribe: POST {server.url}/unsubscribe is newsletter serve, and it refuses the test "
        "link: it checks links with another NEWSLETTER_SECRET_KEY, so every unsubscribe link of this send would fail "
        "(give serve the same NEWSLETTER_SECRET_KEY as send)"
    )
