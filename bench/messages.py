"""Benchmark the sample issue's email: rendering each edition once (Jinja2 → MJML → premailer, target under
50 ms), then personalising its messages on one core (bytes ready for a transport).

Compares our substitution into a once-built message with building each message with EmailMessage.
Run: `python bench/messages.py [--messages 20000]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from email import policy
from email.message import EmailMessage

from _common import ROOT, SAMPLE_ISSUE

from newsletter.config import load_settings
from newsletter.issues import find_issue
from newsletter.messages import MessageTemplate, Recipient
from newsletter.render.email import UNSUBSCRIBE_TOKEN, render_email
from newsletter.render.templates import load_templates
from newsletter.tokens import unsubscribe_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    settings = load_settings(ROOT)
    issue = find_issue(settings, SAMPLE_ISSUE)
    templates = load_templates(settings)
    for edition in issue.editions:
        times = []
        for _ in range(11):  # the first includes compiling the templates
            started = time.perf_counter()
            rendered = render_email(edition, settings, templates)
            times.append(time.perf_counter() - started)
        print(
            f"email render, {edition.lang} edition: first {times[0] * 1000:.1f} ms, then median "
            f"{statistics.median(times[1:]) * 1000:.1f} ms; HTML {len(rendered.html.encode()) / 1024:.0f} KB"
        )
    email = render_email(issue.default, settings, templates)
    secret = b"benchmark-secret-benchmark"
    recipients = [
        Recipient(f"reader{n}@example.com", f"독자 {n}", unsubscribe_token(secret, settings.list_id, n + 1))
        for n in range(args.messages)
    ]

    started = time.perf_counter()
    template = MessageTemplate(email, settings, slug=issue.slug)
    size = 0
    for recipient in recipients:
        raw, _ = template.personalise(recipient)
        size += len(raw)
    ours = time.perf_counter() - started
    print(
        f"substitution: {args.messages:,} messages in {ours:.2f} s = {args.messages / ours:,.0f} messages/s "
        f"({size / args.messages / 1024:.0f} KB each)"
    )

    count = max(500, args.messages // 20)
    started = time.perf_counter()
    for recipient in recipients[:count]:
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = settings.from_address
        message["To"] = recipient.email
        message["Subject"] = email.subject
        message["List-Unsubscribe"] = f"<{settings.base_url}/unsubscribe?token={recipient.token}>"
        message.set_content(email.text.replace(UNSUBSCRIBE_TOKEN, recipient.token), cte="base64")
        message.add_alternative(email.html.replace(UNSUBSCRIBE_TOKEN, recipient.token), subtype="html", cte="base64")
        message.as_bytes()
    baseline = time.perf_counter() - started
    print(f"EmailMessage per recipient (for comparison): {count / baseline:,.0f} messages/s")


if __name__ == "__main__":
    main()
