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


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?x?=",
        "Kim =?utf-8?b?QUJD?= Lee",
        "=?iso-8859-1?q?caf=E9?=",
        '"=?utf-8?q?x?="',
        "김 =?utf-8?q?x?=",
        "=?",
    ],
)
def test_a_name_that_looks_like_an_encoded_word_stays_literal(sample, name: str) -> None:
    """RFC 2047 text in a subscriber's name is shown as typed, never decoded by the reader's client."""
    settings, _, _ = sample
    token = unsubscribe_token(SECRET, settings.list_id, 1)
    _, _, message = _message(sample, "en", Recipient("a@example.com", name, token))
    assert message["To"].addresses[0].display_name == name
    assert message["To"].addresses[0].addr_spec == "a@example.com"


def test_preview_writes_a_complete_message(run, tmp_path: Path) -> None:
    out = tmp_path / "preview"  # beside the publication copy (tmp_path/pub), not around it
    assert run("preview", "2023-09-25-top-ml-papers", "--out", str(out)).exit_code == 0
    message = BytesParser(policy=policy.default).parsebytes((out / "en" / "message.eml").read_bytes())
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


def test_web_app_links_go_to_app_url_and_archive_links_to_base_url(sample) -> None:
    import dataclasses

    settings, issue, _ = sample
    moved = dataclasses.replace(settings, app_url="https://app.example.net")  # the archive on a static host
    templates = load_templates(moved)
    token = unsubscribe_token(SECRET, settings.list_id, 9)
    for edition in issue.editions:
        email = render_email(edition, moved, templates)
        raw, _ = MessageTemplate(email, moved, slug=issue.slug).personalise(Recipient("a@example.com", "", token))
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert message["List-Unsubscribe"] == f"<https://app.example.net/unsubscribe?token={token}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Archive"] == "<https://papers.example.com/>"
        text, html = (part.get_content() for part in message.get_payload())
        for body in (text, html):
            assert f"https://app.example.net/unsubscribe?token={token}" in body
            assert email.archive_url in body and email.archive_url.startswith("https://papers.example.com/")
            assert "papers.example.com/unsubscribe" not in body and "app.example.net/issues" not in body


# ---------------------------------------------------------------- every header line within 998 octets

LONG_NAMES = {
    "ascii": "x" * 10_000,
    "ascii words": "Dr. Jones " * 1_000,
    "quotes": 'Jones, "Bob" \\ ' * 700,
    "korean": "김민지" * 3_334,
    "mixed": ("Kim 민지 " * 1_500).strip(),
}


def _header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def _longest_settings(publication: Path) -> Path:
    """The sample publication with every header-bound setting as long as the settings allow."""
    config = publication / "pyproject.toml"
    text = config.read_text(encoding="utf-8")
    title = "이번 주의 주요 ML 논문 " * 400 + "x" * 2_000  # 10,000+ characters, words and one long run
    base_url = "https://papers.example.com/" + "p" * (500 - len("https://papers.example.com/"))
    app_url = "https://app.example.net/" + "a" * (500 - len("https://app.example.net/"))  # in List-Unsubscribe
    list_id = ("l" * 60 + ".") * 4 + "example.com"  # 255 characters
    sender = "y" * 200
    text = (
        text.replace('title = "이번 주의 주요 ML 논문"', f'title = "{title}"')
        .replace('title = "Top ML Papers of the Week"', f'title = "{"Top ML Papers " * 800}"')
        .replace('base_url = "https://papers.example.com"', f'base_url = "{base_url}"')
        .replace(
            'from = "ML 논문 위클리 <weekly@papers.example.com>"', f'from = "{sender} <weekly@papers.example.com>"'
        )
        .replace('reply_to = "editor@papers.example.com"', f'reply_to = "{"편집" * 100} <editor@papers.example.com>"')
        .replace('list_id = "newsletter.papers.example.com"', f'list_id = "{list_id}"')
        .replace(
            "[tool.newsletter]\n",
            f'[tool.newsletter]\napp_url = "{app_url}"\nunsubscribe_mailto = "{"m" * 230}@example.com"\n',
            1,
        )
    )
    config.write_text(text, encoding="utf-8")
    return config


@pytest.mark.parametrize("kind", sorted(LONG_NAMES))
def test_every_header_line_stays_within_998_octets(publication: Path, kind: str) -> None:
    import dataclasses

    _longest_settings(publication)
    settings = load_settings(publication)
    (issue,) = load_issues(settings)
    templates = load_templates(settings)
    name = LONG_NAMES[kind]
    token = unsubscribe_token(SECRET, settings.list_id, 9)
    for edition in issue.editions:
        email = dataclasses.replace(render_email(edition, settings, templates), subject=name)  # a long title
        raw, _ = MessageTemplate(email, settings, slug=issue.slug).personalise(Recipient("a@example.com", name, token))
        lines = _header_lines(raw)
        assert max(len(line) for line in lines) <= 998, max(lines, key=len)[:60]
        assert all(line.strip() for line in lines)  # no folded line of only white space
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert message.defects == []
        shown = message["To"].addresses[0].display_name
        if name.isascii():
            assert shown == name[:200]  # folded before spaces: unfolding gives the name back
        else:
            assert shown.replace(" ", "") == name[:200].replace(" ", "")
        assert message["Subject"] == name
        assert message["From"].addresses[0].display_name == "y" * 200
        # RFC 2047 §6.2: white space between adjacent encoded-words is ignored; Python's parser keeps it.
        assert message["Reply-To"].addresses[0].display_name.replace(" ", "") == "편집" * 100
        assert message["List-Id"].endswith(f"<{settings.list_id}>")
        assert f"\r\nList-Archive: <{settings.base_url}/>\r\n".encode() in raw  # one line, never encoded
        assert len(settings.app_url) == 500 and settings.app_url != settings.base_url
        url = f"{settings.app_url}/unsubscribe?token={token}"
        expected = f"List-Unsubscribe: <{url}>, <mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>\r\n"
        assert f"\r\n{expected}".encode() in raw
        assert len(expected) - 2 <= 998


def test_the_longest_lines_of_a_real_send(publication: Path, run) -> None:
    """Names in the store from before the length check (SQLite kept them whole) still make lawful headers."""
    from newsletter.store import add_subscriber, open_store

    with open_store(load_settings(publication).database_url) as store:
        for n, name in enumerate(LONG_NAMES.values()):
            add_subscriber(store, f"long{n}@example.com", name=name)
    assert run("send", "2023-09-25-top-ml-papers", "--yes").exit_code == 0
    files = sorted((publication / "outbox" / "2023-09-25-top-ml-papers").glob("*.eml"))
    assert len(files) == len(LONG_NAMES)
    for path in files:
        raw = path.read_bytes()
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert message.defects == [] and len(message["To"].addresses[0].display_name.replace(" ", "")) <= 200


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        (
            f'from = "{"y" * 201} <weekly@papers.example.com>"',
            "from: is 229 characters long; a mail header takes a name of at most 200 and an address of at most 254 (shorten it)",
        ),
        (
            f'base_url = "https://papers.example.com/{"p" * 480}"',
            "base_url: is 507 characters long; List-Unsubscribe must carry it on one header line (use a URL of at most 500 characters)",
        ),
        (
            'list_id = "weekly papers"',
            "list_id: 'weekly papers' is not a list id (use words joined by dots, at most 255 in all)",
        ),
        (
            f'list_id = "{"l" * 256}.example.com"',
            f"list_id: '{'l' * 80}' is not a list id (use words joined by dots, at most 255 in all)",
        ),
        (
            'unsubscribe_mailto = "Leave <leave@example.com>"',
            "unsubscribe_mailto: 'Leave <leave@example.com>' is not one plain address (use leave@example.com)",
        ),
    ],
)
def test_settings_that_would_make_a_header_too_long_are_one_line(
    publication: Path, run, setting: str, problem: str
) -> None:
    config = publication / "pyproject.toml"
    key = setting.split(" = ")[0]
    lines = [line for line in config.read_text(encoding="utf-8").splitlines() if not line.startswith(f"{key} = ")]
    at = lines.index("[tool.newsletter]") + 1
    config.write_text("\n".join([*lines[:at], setting, *lines[at:]]) + "\n", encoding="utf-8")
    result = run("send", "2023-09-25-top-ml-papers", "--dry-run")
    assert result.exit_code == 1
    assert result.stderr == f"Error: pyproject.toml [tool.newsletter] {problem}\n"


def test_a_header_line_over_998_octets_is_refused_when_settings_bypass_their_checks(sample) -> None:
    import dataclasses
    from email.headerregistry import Address

    from newsletter.errors import ConfigError

    settings, issue, emails = sample
    wide = dataclasses.replace(settings, from_address=Address("z" * 2_000, "weekly", "papers.example.com"))
    with pytest.raises(
        ConfigError, match="^the From header: would have a line of 2,0[0-9][0-9] octets; mail allows 998"
    ):
        MessageTemplate(emails["en"], wide, slug=issue.slug)
