"""The interactive side of `newsletter send`: the plan shown first, confirmation, progress bar, Ctrl-C, summary.

The work itself is sending.py's (plan_send, send_issue); this module only talks to the person at the terminal.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from .config import Settings
from .errors import NewsletterError
from .issues import find_issue
from .render.templates import load_templates
from .sending import (
    Progress,
    SendError,
    SendOutcome,
    SendPlan,
    build_templates,
    dry_run,
    messages_left,
    plan_send,
    send_issue,
    send_test,
    test_copies,
    worker_processes,
)
from .store import Store, ambiguous_outcomes, delivery_counts, open_store
from .tokens import secret_key
from .transports import open_transport


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


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
    include_new: bool,
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
    if test_address and dry_run:
        editions = test_copies(settings, messages, test_address, secret)
        click.echo(f"Dry run   built {', '.join(editions)} test copies for {test_address}; nothing was sent")
        return
    if test_address:
        transport = open_transport(name, settings, slug=issue.slug)
        for lang, status, error in send_test(settings, issue, transport, messages, test_address, secret):
            click.echo(f"{lang}: {status} to {test_address}" + (f" ({error})" if error else ""))
        return
    with open_store(settings.database_url, setting=settings.database_setting) as store:
        plan = plan_send(
            settings, store, issue, messages, secret,
            transport=name, rate=rate, resend=resend, include_new=include_new, allow_partial=allow_partial,
        )  # fmt: skip
        busy = plan.busy_refusal()
        if busy is not None and not dry_run:
            plan.transport.close()
            raise busy
        _show_plan(plan)
        if busy is not None:
            click.echo(f"Note      {busy.message}")
        if dry_run:
            built = _dry_run(plan, store)
            plan.transport.close()
            if built is not None:
                raise built
            return
        refusal = plan.refusal()
        if refusal is not None:
            plan.transport.close()
            raise refusal
        if not yes:
            click.confirm("Send now?", abort=True)
        outcome = _send_with_progress_bar(plan, store)
        final = delivery_counts(store, issue.slug)
        again = f"newsletter send {issue.slug}" + (f" --transport {name}" if name != settings.transport else "")
        _report(outcome, final, store, issue.slug, plan.total, again)


def _show_plan(plan: SendPlan) -> None:
    """The plan, as the send will carry it out."""
    audience = plan.audience
    click.echo(f"Issue     {plan.issue.slug}: {', '.join(plan.messages)} edition(s)")
    if plan.resuming:
        logged = audience.logged
        click.echo(
            f"Resuming  {plan.total:,} message(s) left of {sum(logged.values()):,} ({logged['sent']:,} sent)"
            + (", and those who joined since" if plan.include_new else "")
        )
    elif plan.resend and any(audience.logged.values()):
        click.echo(f"Resending to everyone: the send log of {sum(audience.logged.values()):,} is started again")
    for lang, count in audience.per_edition.items():
        click.echo(f"  {lang}: {count:,} recipient(s)")
    click.echo("Left out  " + ", ".join(f"{count:,} {reason}" for reason, count in audience.left_out.items()))
    click.echo(f"Transport {plan.transport.name}, rate {plan.rate_source}")
    processes = worker_processes(plan)
    click.echo(
        f"In flight up to {plan.transport.max_in_flight:,} message(s) at once"
        + (f", sent by {processes} worker processes" if processes > 1 else "")
    )
    if plan.total:
        click.echo(f"Estimate  {_duration(plan.estimate)} at about {plan.expected_rate:,.0f}/s")


def _dry_run(plan: SendPlan, store: Store) -> SendError | None:
    """Build every planned message and say so; the refusal a real send would meet, if any."""
    built = dry_run(plan, store)
    click.echo(
        "Dry run   built "
        + ", ".join(f"{n:,} {lang}" for lang, n in built.items() if lang != "invalid")
        + f" message(s); {built['invalid']:,} address(es) could not be used; nothing was sent"
    )
    return plan.refusal() if plan.total else None


def _send_with_progress_bar(plan: SendPlan, store: Store) -> SendOutcome:
    """send_issue behind a progress bar; the first Ctrl-C stops after the messages in flight, a second at once."""
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(_signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\nStopping after the messages in flight (Ctrl-C again to stop at once) …", err=True)

    signal.signal(signal.SIGINT, on_interrupt)
    bars: list[Any] = []  # the bar appears with the first message: a send refused at its start prints one line
    shown = [0]

    def update(progress: Progress) -> None:
        if not bars:
            bar = click.progressbar(
                length=plan.total,
                label="Sending",
                show_eta=True,
                show_pos=True,
                item_show_func=lambda p: p,
                file=sys.stderr,
            )
            bars.append(bar.__enter__())
        bars[0].update(
            progress.done - shown[0], f"sent {progress.sent:,} · failed {progress.failed:,} · {progress.rate:,.1f}/s"
        )
        shown[0] = progress.done

    try:
        return send_issue(plan, store, stop=stop, on_progress=update)
    finally:
        if bars:
            bars[0].__exit__(None, None, None)
        signal.signal(signal.SIGINT, previous)


def _report(outcome: SendOutcome, final: dict[str, int], store: Store, slug: str, total: int, again: str) -> None:
    """The summary lines; an error (exit 1) when the run stopped early, or left failures or deferrals."""
    p = outcome.progress
    click.echo(
        f"Sent {p.sent:,}, failed {p.failed:,}, deferred {p.deferred:,}, skipped {p.skipped:,}"
        + (f", outcome unknown {p.unknown:,}" if p.unknown else "")
        + f" in {_duration(p.elapsed)} ({p.rate:,.1f}/s). Send log: "
        + ", ".join(f"{count:,} {state}" for state, count in final.items() if count)
    )
    if p.throttled or p.ambiguous or p.retried:
        settled = f"; the rate settled at {outcome.settled_rate:,.1f}/s" if outcome.settled_rate else ""
        click.echo(
            f"Throttled {p.throttled:,} time(s){settled} (of {outcome.ceiling or 0:,.1f}/s); "
            f"{p.ambiguous:,} answer(s) lost (the peer may have taken those), {p.retried:,} attempt(s) made again"
        )
    lost, concerned = ambiguous_outcomes(store, slug)
    if lost:
        click.echo(
            f"No answer {lost:,} request(s) of this issue got none ({concerned:,} recipient(s) may have it twice)"
        )
    if outcome.stopped:
        left = messages_left(final)
        raise SendError(
            "send",
            f"stopped after {p.done:,} of {total:,}: {outcome.stopped}",
            f"run '{again}' again to resume; {left:,} left",
        )
    if p.failed:
        raise NewsletterError(slug, f"{p.failed:,} message(s) failed for good", f"see 'newsletter status {slug}'")
    if final["deferred"]:
        raise NewsletterError(
            slug,
            f"{final['deferred']:,} message(s) deferred by the server",
            f"run '{again}' again later to retry them",
        )
    if p.unknown:
        raise NewsletterError(
            slug,
            f"{p.unknown:,} message(s) got no answer and are not sent again (the server may have taken them)",
            f"check the server or endpoint; 'newsletter status {slug}' lists them",
        )
