"""The interactive side of `newsletter send`: the plan shown first, confirmation, progress bar, Ctrl-C, summary.

The work itself is sending.py's; this module only talks to the person at the terminal.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from .config import Settings
from .errors import NewsletterError
from .issues import Issue, find_issue
from .messages import MessageTemplate
from .ratelimit import RateLimiter
from .render.templates import load_templates
from .sending import (
    Progress,
    SendError,
    SendOutcome,
    build_templates,
    messages_left,
    preview_audience,
    send_edition,
    send_test,
    start_send,
)
from .sending import dry_run as build_all
from .store import Store, delivery_counts, open_store
from .tokens import secret_key
from .transports import Transport, open_transport

UNLIMITED_RATE_GUESS = 1500  # messages/s the file transport writes here (bench/send_file.py)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _limits(transport: Any, settings: Settings, rate: float | None) -> tuple[float | None, int | None, str]:
    """(messages per second, cap for this run, a line saying where they come from)."""
    wanted = rate or settings.rate
    if not hasattr(transport, "quota"):  # only a transport with an account quota (SES) has one
        return wanted, None, f"{wanted:g}/s" if wanted else "as fast as the transport takes them"
    quota = transport.quota()
    chosen = min(quota.max_send_rate, wanted) if wanted else quota.max_send_rate
    remaining = quota.remaining
    left = "unlimited" if remaining is None else f"{int(remaining):,} left of {int(quota.max_24_hour_send or 0):,}"
    return (
        chosen,
        None if remaining is None else int(remaining),
        f"{chosen:g}/s (SES allows {quota.max_send_rate:g}/s; 24-hour quota: {left})",
    )


def run_send(
    settings: Settings,
    issue_name: str,
    *,
    transport_name: str | None,
    yes: bool,
    test_address: str | None,
    dry_run: bool,
    rate: float | None,
    allow_partial: bool,
    resend: bool,
) -> None:
    """Everything `newsletter send` does, in order; raises our errors for the CLI to print."""
    issue = find_issue(settings, issue_name)
    name = transport_name or settings.transport
    secret, development = secret_key(name)  # a missing secret stops here, before anything is built
    messages = build_templates(settings, load_templates(settings), issue)
    if development:
        click.echo(
            "Note: NEWSLETTER_SECRET_KEY is not set; the file transport signs links with a development "
            "secret that a real server would not accept.",
            err=True,
        )
    with open_store(settings.database_url, setting=settings.database_setting) as store:
        if test_address:
            transport = open_transport(name, settings, slug=issue.slug)
            for lang, status, error in send_test(settings, issue, transport, messages, test_address, secret):
                click.echo(f"{lang}: {status} to {test_address}" + (f" ({error})" if error else ""))
            return
        audience = preview_audience(store, issue, settings)
        per_edition, left_out = audience.per_edition, audience.left_out
        click.echo(f"Issue     {issue.slug}: {', '.join(messages)} edition(s)")
        for lang, count in sorted(per_edition.items()):
            click.echo(f"  {lang}: {count:,} recipient(s)")
        click.echo("Left out  " + ", ".join(f"{count:,} {reason}" for reason, count in left_out.items()))
        if dry_run:
            built = build_all(settings, store, issue, messages, secret)
            click.echo(
                "Dry run   built "
                + ", ".join(f"{n:,} {lang}" for lang, n in built.items() if lang != "invalid")
                + f" message(s); {built['invalid']:,} address(es) could not be used; nothing was sent"
            )
            return
        transport = open_transport(name, settings, slug=issue.slug)
        per_second, cap, rate_line = _limits(transport, settings, rate)
        counts = delivery_counts(store, issue.slug)
        resuming = any(counts.values()) and not resend
        total_now = messages_left(counts) if resuming else sum(per_edition.values())
        click.echo(f"Transport {transport.name}, rate {rate_line}")
        if resuming:
            click.echo(f"Resuming  {total_now:,} message(s) left of {sum(counts.values()):,} ({counts['sent']:,} sent)")
        if per_second:
            click.echo(f"Estimate  {_duration(total_now / per_second)}")
        else:  # no rate limit: the transport sets the pace
            click.echo(f"Estimate  {_duration(total_now / UNLIMITED_RATE_GUESS)} or more (no rate limit)")
        if cap is not None and total_now > cap and not allow_partial:
            raise SendError(
                issue.slug,
                f"needs {total_now:,} messages but only {cap:,} are left of the 24-hour quota",
                "pass --allow-partial to send those now and the rest later",
            )
        if not yes:
            click.confirm("Send now?", abort=True)
        total = start_send(store, issue, settings, resend=resend)
        limiter = RateLimiter(per_second, cap=cap)
        outcome = _send_with_progress_bar(settings, store, issue, transport, messages, secret, limiter, total)
        final = delivery_counts(store, issue.slug)
    _report(outcome, final, issue.slug, total)


def _send_with_progress_bar(
    settings: Settings,
    store: Store,
    issue: Issue,
    transport: Transport,
    messages: dict[str, MessageTemplate],
    secret: bytes,
    limiter: RateLimiter,
    total: int,
) -> SendOutcome:
    """send_edition behind a progress bar; the first Ctrl-C stops after the message in flight, a second at once."""
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(_signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\nStopping after the message in flight (Ctrl-C again to stop at once) …", err=True)

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        with click.progressbar(
            length=total, label="Sending", show_eta=True, show_pos=True, item_show_func=lambda p: p, file=sys.stderr
        ) as bar:

            def update(progress: Progress) -> None:
                bar.update(1, f"sent {progress.sent:,} · failed {progress.failed:,} · {progress.rate:,.1f}/s")

            return send_edition(
                settings,
                store,
                issue,
                transport,
                messages,
                secret,
                limiter=limiter,
                total=total,
                stop=stop,
                on_progress=update,
            )
    finally:
        signal.signal(signal.SIGINT, previous)


def _report(outcome: SendOutcome, final: dict[str, int], slug: str, total: int) -> None:
    """The summary line; an error (exit 1) when the run stopped early, or left failures or deferrals."""
    p = outcome.progress
    click.echo(
        f"Sent {p.sent:,}, failed {p.failed:,}, deferred {p.deferred:,}, skipped {p.skipped:,} in "
        f"{_duration(p.elapsed)} ({p.rate:,.1f}/s). Send log: "
        + ", ".join(f"{count:,} {state}" for state, count in final.items() if count)
    )
    left = messages_left(final)
    if outcome.stopped:
        raise SendError(
            "send",
            f"stopped after {p.done:,} of {total:,}: {outcome.stopped}",
            f"run 'newsletter send {slug}' again to resume; {left:,} left",
        )
    if p.failed:
        raise NewsletterError(slug, f"{p.failed:,} message(s) failed for good", f"see 'newsletter status {slug}'")
    if left:
        raise NewsletterError(
            slug,
            f"{left:,} message(s) deferred by the server",
            f"run 'newsletter send {slug}' again later to retry them",
        )
