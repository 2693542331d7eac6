"""Messages built by substitution, read back as a mail client reads them (Python's email parser) and as bytes."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.issues import load_issues
from newsletter.messages import MessageError, MessageTemplate, Recipient
from newsletter.render.email import UNSUBSCRIBE_TOKEN, render_email
from newsletter.render.templates import load_templates
from newsletter.tokens import unsubscribe_token, verify_unsubscribe_token

SECRET = b"test-secret-test-secret"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import REPO

    settings = load_settings(REPO)
    templates = load_templates(settings)
    (issue,) = load_issues(settings)
    emails = {e.lang: render_email(e, settings, templates) for e in issue.editions}
    return settings, issue, emails


def _message(sample, lang: str, recipient: Recipient):
    settings, issue, emails = sample
    raw, message_id = MessageTemplate(emails[lang], settings, slug=issue.slug).personalise(recipient)
    return raw, message_id, BytesParser(policy=policy.default).parsebytes(raw)


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_message_headers_and_parts_as_a_client_reads_them(sample, lang: str) -> None:
    settings, issue, emails = sample
    token = unsubscribe_token(SECRET, settings.list_id, 77)
    raw, message_id, message = _message(sample, lang, Recipient("kim@example.com", "김민지", token))
    assert message["From"] == "ML 논문 위클리 <weekly@papers.example.com>"
    assert message["To"] == "김민지 <kim@example.com>"
    assert message["Subject"] == emails[lang].subject
    assert message["Message-ID"] == message_id and message_id.endswith("@papers.example.com>")
    assert message["Date"] and message["Reply-To"] == "editor@papers.example.com"
    assert message["List-Id"].endswith("<newsletter.papers.example.com>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_payload()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")  # RFC 2046: text first
    assert text["Content-Transfer-Encoding"] == html["Content-Transfer-Encoding"] == "base64"
    assert html.get_content() == emails[lang].html.replace(UNSUBSCRIBE_TOKEN, token)
    assert text.get_content() == emails[lang].text.replace(UNSUBSCRIBE_TOKEN, token)
    assert message.defects == [] and text.defects == [] and html.defects == []


def test_raw_bytes_keep_the_rules_mail_clients_depend_on(sample) -> None:
    settings, _, _ = sample
    token = unsubscribe_token(SECRET, settings.list_id, 123456)
    raw, _, _ = _message(sample, "ko", Recipient("a@example.com", "", token))
    url = f"https://papers.example.com/unsubscribe?token={token}"
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in raw  # one line, never RFC 2047-encoded
    assert raw.count(b"List-Unsubscribe:") == 1 and raw.count(b"\r\nTo: ") + raw.startswith(b"To: ") == 1
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF everywhere
    assert raw.isascii()  # 7-bit clean: Hangul only inside base64 and encoded-words
    for word in re.findall(rb"=\?utf-8\?b\?[^?]*\?=", raw):
        assert len(word) <= 75
    assert verify_unsubscribe_token(SECRET, settings.list_id, token) == 123456


@pytest.mark.parametrize(
    ("recipient", "reason"),
    [
        (Recipient("a@example.com", "Kim\r\nBcc: x@evil.test", "x" * 30), "line break"),
        (Recipient("a@example.com\r\nBcc: x@evil.test", "", "x" * 30), "not a plain ASCII address"),
        (Recipient("김@example.com", "", "x" * 30), "not a plain ASCII address"),
        (Recipient("a@example.com", "", "short"), "token is malformed"),
    ],
)
def test_header_injection_is_refused(sample, recipient: Recipient, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        _message(sample, "ko", recipient)


def test_quoted_and_long_names(sample) -> None:
    settings, _, _ = sample
    token = unsubscribe_token(SECRET, settings.list_id, 1)
    _, _, quoted = _message(sample, "en", Recipient("a@example.com", 'Jones, "Bob"', token))
    assert quoted["To"].addresses[0].display_name == 'Jones, "Bob"'
    long_name = "가나다라마바사아자차카타파하" * 4
    raw, _, message = _message(sample, "ko", Recipient("a@example.com", long_name, token))
    # RFC 2047 §6.2: white space between adjacent encoded-words is ignored; Python's parser keeps it.
    assert message["To"].addresses[0].display_name.replace(" ", "") == long_name
    assert all(len(line) <= 78 for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n") if line.startswith((b"To", b" ")))


def test_preview_writes_a_complete_message(run, tmp_path: Path) -> None:
    assert run("preview", "2023-09-25-top-ml-papers", "--out", str(tmp_path)).exit_code == 0
    message = BytesParser(policy=policy.default).parsebytes((tmp_path / "en" / "message.eml").read_bytes())
    assert message["To"] == "Sample Reader <reader@example.com>"
    assert "Top ML Papers of the Week" in message["Subject"]


def test_mailto_unsubscribe_is_offered_when_configured(sample) -> None:
    import dataclasses

    settings, issue, emails = sample
    with_mailto = dataclasses.replace(settings, unsubscribe_mailto="leave@papers.example.com")
    token = unsubscribe_token(SECRET, settings.list_id, 5)
    raw, _ = MessageTemplate(emails["en"], with_mailto, slug=issue.slug).personalise(
        Recipient("a@example.com", "", token)
    )
    expected = (
        f"List-Unsubscribe: <https://papers.example.com/unsubscribe?token={token}>, "
        "<mailto:leave@papers.example.com?subject=unsubscribe>\r\n"
    )
    assert expected.encode() in raw  # HTTPS first: the preferred method comes first (RFC 2369)
