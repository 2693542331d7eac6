"""The terminal side of `newsletter send`: the plan shown first, confirmation, progress bar, Ctrl-C, summary;
and `send --due`, which sends what schedule.py finds due without asking (for a timer).

The work itself is sending.py's (plan_send, send_issue); this module only talks to the person at the terminal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click

from .config import Settings
from .errors import NewsletterError
from .issues import find_issue, publication_instant
from .render.templates import Templates, load_templates
from .schedule import Scheduled, Standing, load_schedulable, schedule
from .sending import (
    PER_PROCESS_RATE,
    Progress,
    SenderBusyError,
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
from .time_words import on_clock, setting_span, span
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
    secret = _secret(name)  # a missing secret stops here, before anything is built
    messages = build_templates(settings, load_templates(settings), issue)
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
        at = publication_instant(issue, settings)
        early = at - dt.datetime.now(dt.UTC)
        if early > dt.timedelta(0):
            click.echo(
                f"Note      its time is {on_clock(at, settings.timezone)}, in {span(early)}: this sends it now "
                "('newsletter send --due' would wait for it)"
            )
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
        again = f"newsletter send {issue.slug}" + (f" --transport {name}" if name != settings.transport else "")
        try:
            outcome = _send_with_progress_bar(plan, store)
        except KeyboardInterrupt:
            raise _stopped_at_once(store, issue.slug, again) from None
        final = delivery_counts(store, issue.slug)
        _report(outcome, final, store, issue.slug, plan.total, again)


def _show_plan(plan: SendPlan) -> None:
    """The plan, as the send will carry it out."""
    audience = plan.audience
    click.echo(f"Issue     {plan.issue.slug}: {', '.join(plan.messages)} edition(s)")
    if plan.resuming:
        logged = audience.logged
        joined = audience.joined if plan.include_new else 0
        click.echo(
            f"Resuming  {plan.total - joined:,} message(s) left of {sum(logged.values()):,} ({logged['sent']:,} sent)"
            + (f", and {joined:,} for those who joined since" if plan.include_new else "")
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
        + (
            f", sent by up to {processes} worker processes (fewer if other senders share the rate)"
            if processes > 1
            else ""
        )
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
    return plan.refusal()


@contextlib.contextmanager
def _stopped_by(*signals: signal.Signals) -> Iterator[threading.Event]:
    """An event the first of `signals` sets (the send stops after the messages in flight); a second one stops at
    once. The previous handlers come back afterwards."""
    stop = threading.Event()
    previous = {number: signal.getsignal(number) for number in signals}

    def on_signal(_signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\nStopping after the messages in flight (Ctrl-C again to stop at once) …", err=True)

    for number in signals:
        signal.signal(number, on_signal)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _send_with_progress_bar(plan: SendPlan, store: Store) -> SendOutcome:
    """send_issue behind a progress bar; the first Ctrl-C stops after the messages in flight, a second at once."""
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

    with _stopped_by(signal.SIGINT) as stop:
        try:
            return send_issue(plan, store, stop=stop, on_progress=update)
        finally:
            if bars:
                bars[0].__exit__(None, None, None)


def _stopped_at_once(store: Store, slug: str, again: str) -> SendError:
    """The line for a second Ctrl-C: the send stopped without the answers to its requests in flight, so the
    messages it had claimed are sent again when it resumes, and those whose requests had left may arrive twice
    (the crash bound of a kill)."""
    try:
        counts = delivery_counts(store, slug)
    except Exception:  # the interrupt struck inside a call of the store, which may fail now: say it without counts
        counts = None
    claimed = f"{counts['sending']:,} message(s) it had claimed" if counts else "the messages it had claimed"
    left = f"; {messages_left(counts):,} left" if counts else ""
    return SendError(
        "send",
        f"stopped at once, without the answers to its requests in flight: {claimed} are sent again when it "
        "resumes, and those whose requests had left may arrive twice",
        f"run '{again}' again to resume{left}",
    )


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
    if outcome.processes > 1:
        click.echo(
            f"Worker processes made {p.by_processes:,} of {p.attempts:,} attempt(s)"
            + (
                f"; this process made the others, while its share of the rate was {PER_PROCESS_RATE:,}/s or less"
                if p.by_processes < p.attempts
                else ""
            )
        )
    lost, concerned = ambiguous_outcomes(store, slug)
    if lost:
        unknown = min(final["unknown"], concerned)  # not sent again: they have it once, or not at all
        said = [f"{concerned - unknown:,} recipient(s) may have it twice"] if concerned > unknown else []
        if unknown:
            said.append(f"{unknown:,} may have it once or not at all (outcome unknown, not sent again)")
        click.echo(f"No answer {lost:,} request(s) of this issue got none: {'; '.join(said)}")
    if outcome.paused:  # the reputation guard: what to check, then the same command resumes
        pause = outcome.paused
        raise SendError(
            "send",
            pause.reason,
            f"{pause.check}, then run '{again}' to resume ({messages_left(final):,} left), or raise {pause.setting}",
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


def run_due(
    settings: Settings,
    *,
    now: dt.datetime,
    late_ok: bool,
    transport_name: str | None,
    dry_run: bool,
    rate: float | None,
    allow_partial: bool,
) -> int:
    """Everything `newsletter send --due` does: send each issue due at `now`, oldest first, without asking, then
    one line on the rest. Returns the exit code: 1 when a due issue did not go out completely or a file is broken
    (each said on its own `Error:` line), else 0; issues past max_late are listed and do not change it."""
    issues, broken = load_schedulable(settings)
    for err in broken:
        click.echo(f"Error: {err}", err=True)
    name = transport_name or settings.transport
    failed = 0
    with open_store(settings.database_url, setting=settings.database_setting) as store:
        entries = schedule(settings, issues, store, now)
        due = [entry for entry in entries if entry.is_due(late_ok=late_ok)]
        prepared: list[tuple[bytes, Templates]] = []
        for entry in due:
            if not prepared:  # the secret and templates only when something is due (a missing secret stops here)
                prepared.append((_secret(name), load_templates(settings)))
            secret, templates = prepared[0]
            try:
                _send_due(settings, store, entry, templates, secret, name, rate, allow_partial, dry_run)
            except _Halted as halted:  # stopped on request, or by the transport (a quota, a paused account)
                click.echo(f"Error: {halted.error}", err=True)
                failed += 1
                break
            except NewsletterError as err:
                click.echo(f"Error: {err}", err=True)
                failed += 1
    rest = [entry for entry in entries if not entry.is_due(late_ok=late_ok)]
    click.echo(_summary(settings, rest, now, due=len(due), dry_run=dry_run))
    return 1 if failed or broken else 0


class _Halted(Exception):
    """A due issue's send stopped early: the issues after it wait for the next run."""

    def __init__(self, error: NewsletterError) -> None:
        super().__init__(str(error))
        self.error = error


def _secret(name: str) -> bytes:
    """The secret that signs the links (a missing one is our error); a note when it is the development one."""
    secret, development = secret_key(name)
    if development:
        click.echo(
            "Note: NEWSLETTER_SECRET_KEY is not set; the file transport signs links with a development "
            "secret that a real server would not accept.",
            err=True,
        )
    return secret


def _send_due(
    settings: Settings,
    store: Store,
    entry: Scheduled,
    templates: Templates,
    secret: bytes,
    name: str,
    rate: float | None,
    allow_partial: bool,
    dry_run: bool,
) -> None:
    """Send (or dry-run) one due issue, with its lines. Raises our errors, or _Halted when the send stopped early."""
    issue = entry.issue
    messages = build_templates(settings, templates, issue)
    plan = plan_send(settings, store, issue, messages, secret, transport=name, rate=rate, allow_partial=allow_partial)
    when = f"{issue.slug}, {on_clock(entry.at, settings.timezone)} ({span(entry.late)} ago)"
    sending = False
    try:
        busy = plan.busy_refusal()
        if busy is not None:
            click.echo(f"Skipped   {when}: {busy.message}")
            return
        if not plan.total and not any(plan.audience.logged.values()):
            click.echo(f"Skipped   {when}: nobody to send to (no active subscribers)")
            return
        if plan.resuming:
            logged = plan.audience.logged
            doing = f"resuming, {plan.total:,} message(s) left of {sum(logged.values()):,} ({logged['sent']:,} sent)"
        else:
            doing = f"starting, {plan.total:,} message(s) in the {', '.join(plan.messages)} edition(s)"
        click.echo(f"Due       {when}: {doing}")
        if dry_run:
            refusal = _dry_run(plan, store)
        else:
            refusal = plan.refusal()
        if refusal is not None:
            raise refusal
        if dry_run:
            return
        sending = True
    finally:
        if not sending:
            plan.transport.close()
    again = "newsletter send --due" + (f" --transport {name}" if name != settings.transport else "")
    with _stopped_by(signal.SIGINT, signal.SIGTERM) as stop:  # systemd stops a unit with SIGTERM
        try:
            outcome = send_issue(plan, store, stop=stop)  # closes the transport
        except SenderBusyError as err:  # another sender registered between the plan and the start
            click.echo(f"Skipped   {when}: {err.message}")
            return
        except KeyboardInterrupt:  # the second signal
            raise _Halted(_stopped_at_once(store, issue.slug, again)) from None
    try:
        _report(outcome, delivery_counts(store, issue.slug), store, issue.slug, plan.total, again)
    except NewsletterError as err:
        if outcome.stopped:
            raise _Halted(err) from None
        raise


def _summary(settings: Settings, rest: list[Scheduled], now: dt.datetime, *, due: int, dry_run: bool) -> str:
    """One line on the issues that were not due: how many stand where, the next to come, and what to run for
    those past max_late."""
    by: dict[Standing, list[Scheduled]] = {standing: [] for standing in Standing}
    for entry in rest:
        by[entry.standing].append(entry)
    if not due:
        head = "Nothing due"
    else:
        head = "Dry run" if dry_run else "Checked"
    parts = [f"{due:,} due (above{'; nothing was sent' if dry_run else ''})"] if due else []
    parts.append(f"{len(by[Standing.SENT]):,} sent already")
    if by[Standing.SCHEDULED]:
        first = by[Standing.SCHEDULED][0]
        parts.append(
            f"{len(by[Standing.SCHEDULED]):,} scheduled (next: {first.issue.slug} at "
            f"{on_clock(first.at, settings.timezone)}, in {span(-first.late)})"
        )
    if by[Standing.DRAFT]:
        parts.append(f"{len(by[Standing.DRAFT]):,} draft(s)")
    late = setting_span(settings.max_late)
    if by[Standing.UNFINISHED]:
        newest = by[Standing.UNFINISHED][-1]
        parts.append(
            f"{len(by[Standing.UNFINISHED]):,} unfinished and more than {late} past its time (the newest: "
            f"{newest.issue.slug}, {newest.left:,} left; 'newsletter send --due --late-ok' finishes them)"
        )
    if by[Standing.MISSED]:
        newest = by[Standing.MISSED][-1]
        parts.append(
            f"{len(by[Standing.MISSED]):,} missed, never sent and more than {late} past its time (the newest: "
            f"{newest.issue.slug}; 'newsletter send {newest.issue.slug}' sends one anyway)"
        )
    return f"{head} at {on_clock(now, settings.timezone)}: {', '.join(parts)}"
