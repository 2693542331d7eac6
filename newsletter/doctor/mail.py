"""The message as subscribers get it: each edition of the newest issue that is not a draft, built by the message
layer for the preview's stand-in subscriber, must carry one-click List-Unsubscribe headers and a List-Id, and its
HTML must stay under Gmail's clipping size."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from ..config import Settings
from ..errors import NewsletterError
from ..issues import Issue, load_issues
from ..messages import MessageTemplate, sample_recipient
from ..render.email import HTML_LIMIT_BYTES, HTML_WARN_BYTES, render_email
from ..render.templates import Templates, load_templates
from .findings import Finding, failed, passed, warned

ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058 §3.1: the only value of List-Unsubscribe-Post
URI = re.compile(r"<([^>]*)>")


@dataclass(frozen=True)
class MessageReport:
    """The findings, and the one-click URL the first edition's List-Unsubscribe carries (None if none)."""

    findings: list[Finding]
    unsubscribe_url: str | None


def newest_issue(settings: Settings) -> Issue | None:
    """The newest issue whose default edition is not a draft (with its editions that are not drafts)."""
    for issue in load_issues(settings, include_drafts=False):
        if issue.default.is_default:
            return issue
    return None


def check_messages(settings: Settings, token: str, templates: Templates | None = None) -> MessageReport:
    """Build each sendable edition of the newest issue for the stand-in subscriber, whose link carries `token`."""
    try:
        issue = newest_issue(settings)
        if issue is None:
            finding = warned("message", "issues/ has no issue that is not a draft", "write one and run doctor again")
            return MessageReport([finding], None)
        templates = templates or load_templates(settings)
        findings: list[Finding] = []
        url: str | None = None
        for edition in issue.editions:
            email = render_email(edition, settings, templates)
            raw, _ = MessageTemplate(email, settings, slug=issue.slug).personalise(sample_recipient(token))
            message = BytesParser(policy=policy.default).parsebytes(raw)
            assert isinstance(message, EmailMessage)
            header_finding, edition_url = _list_headers(message, f"list headers ({edition.lang})", edition.path)
            findings.append(header_finding)
            findings.append(_clip_size(message, f"gmail clip ({edition.lang})", edition.path))
            url = url or edition_url
        return MessageReport(findings, url)
    except NewsletterError as err:  # a broken issue, template or setting: the message cannot be built
        return MessageReport([failed("message", f"cannot be built: {err}", "run newsletter check")], None)


def _list_headers(message: EmailMessage, check: str, where: str) -> tuple[Finding, str | None]:
    """RFC 8058: List-Unsubscribe holds an HTTPS URI and List-Unsubscribe-Post says One-Click; RFC 2919 List-Id."""
    unsubscribe = str(message.get("List-Unsubscribe", ""))
    post = str(message.get("List-Unsubscribe-Post", ""))
    list_id = str(message.get("List-Id", ""))
    uris = URI.findall(unsubscribe)
    web = next((uri for uri in uris if uri.startswith(("https://", "http://"))), None)
    if not unsubscribe or web is None:
        return failed(check, f"{where}: List-Unsubscribe has no web URI", "the message layer must add it"), None
    if post.strip() != ONE_CLICK:
        return failed(check, f"{where}: List-Unsubscribe-Post is {post!r}, not {ONE_CLICK!r}", "RFC 8058 §3.1"), web
    if not web.startswith("https://"):
        return (
            failed(
                check,
                f"List-Unsubscribe is {web.split('?')[0]}, not HTTPS: one-click needs an https URI (RFC 8058 §3.1)",
                "set app_url (or base_url) to the https address that serves /unsubscribe",
            ),
            web,
        )
    if not list_id:
        return warned(check, "one-click List-Unsubscribe and -Post are there, but no List-Id", "set list_id"), web
    return passed(check, f"one-click List-Unsubscribe ({web.split('?')[0]}), List-Unsubscribe-Post, List-Id"), web


def _clip_size(message: EmailMessage, check: str, where: str) -> Finding:
    """Gmail clips a message whose HTML passes ~102 KB, hiding the footer and its unsubscribe link."""
    part = message.get_body(preferencelist=("html",))
    if part is None:
        return failed(check, f"{where}: the message has no HTML part", "check templates/email.mjml.j2")
    content = part.get_content()
    size = len(content.encode("utf-8")) if isinstance(content, str) else len(content)
    what = f"{size:,} bytes of HTML; Gmail clips over {HTML_LIMIT_BYTES:,}"
    if size > HTML_LIMIT_BYTES:
        return failed(check, f"{where}: {what}", "shorten the issue or split it: the unsubscribe footer is clipped")
    if size > HTML_WARN_BYTES:
        return warned(check, f"{where}: {what}", f"keep it under {HTML_WARN_BYTES:,} to leave room")
    return passed(check, what)
