"""Sending an issue, as one use case: `plan_send` says what a send would do, `send_issue` does exactly that.

The plan, the dry run and the send read the audience from one query (store.Audience), so they agree. The send
itself is send_loop.py's; this module sets it up: the messages, the transport's limits, the sender's
registration (one sender per issue on SQLite; several, sharing the rate, on PostgreSQL), and the snapshot.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import Settings
from .errors import NewsletterError
from .issues import Edition, Issue
from .link_tags import issue_tag
from .messages import MessageError, MessageTemplate, Recipient
from .ratelimit import SETTLE, RateLimiter
from .render.email import render_email
from .render.templates import Templates
from .reputation import Pause, ReputationGuard
from .send_loop import HEARTBEAT, Progress, SendLoop, crash_bound
from .send_processes import PER_PROCESS_RATE
from .store import (
    ISSUE_LIMIT,
    AudiencePlan,
    OtherSender,
    SenderBusy,
    SendLog,
    Store,
    finish_sender,
    other_sender,
    plan_audience,
    planned_recipients,
    register_sender,
    reset_for_resend,
    send_feedback,
    snapshot_audience,
)
from .store.senders import database_now, heartbeat_and_count_unseen
from .tokens import unsubscribe_token
from .transports import open_transport
from .transports.base import OutgoingMessage, SendQuota, SendStatus, Transport

TEST_SUBSCRIBER_ID = 0  # test copies carry a token that names nobody
FILE_RATE_GUESS = 2000  # messages/s the file transport writes here (bench/send_file.py), for the estimate
FIRST_LATENCY_GUESS = 0.05  # seconds per request before any answer came (SMTP)
MAX_PROCESSES = 4
RAMP_ABOVE = 50  # messages a second above which a send starts at half its rate and reaches it in RAMP_SECONDS
RAMP_SECONDS = 2.0
FORK = "fork" in multiprocessing.get_all_start_methods()

__all__ = [
    "PER_PROCESS_RATE",
    "Progress",
    "SendError",
    "SendOutcome",
    "SendPlan",
    "SenderBusyError",
    "crash_bound",
    "plan_send",
    "send_issue",
]


class SendError(NewsletterError):
    """A send cannot start, or had to stop."""


class SenderBusyError(SendError):
    """Another process is sending the issue, and the store (SQLite) allows one sender per issue."""


@dataclass(frozen=True)
class SendOutcome:
    """How a run ended: its counts, why it stopped early (None when it finished), and the rate it settled at."""

    progress: Progress
    stopped: str | None
    settled_rate: float | None  # the limiter's rate at the end (lower than the ceiling after throttles)
    ceiling: float | None
    paused: Pause | None = None  # the reputation guard paused the run (then `stopped` is its reason)
    processes: int = 1  # worker processes forked for the run (1: none; see send_processes)


@dataclass
class SendPlan:
    """What `send_issue` will do: the messages, the audience, the transport and its pace."""

    settings: Settings
    issue: Issue
    messages: dict[str, MessageTemplate]
    secret: bytes
    transport: Transport
    audience: AudiencePlan
    resend: bool
    include_new: bool
    rate: float | None  # messages per second for all senders together (None: as fast as the transport goes)
    rate_source: str  # where the rate comes from, for the plan's line
    cap: int | None  # what is left of the 24-hour quota
    quota: SendQuota | None
    latency: float  # seconds per request, as first seen (the quota's round trip) or guessed
    allow_partial: bool
    busy: OtherSender | None = None  # SQLite: the sender already at work on this issue

    @property
    def total(self) -> int:
        """Messages this send hands over."""
        return self.audience.total

    @property
    def resuming(self) -> bool:
        return not self.audience.audience.fresh

    @property
    def expected_rate(self) -> float:
        """The rate the transport will reach: the limit, or what its requests in flight allow at its latency."""
        reachable = self.transport.max_in_flight / max(self.latency, 1e-6)
        if self.transport.name == "file":
            reachable = FILE_RATE_GUESS
        return min(self.rate or reachable, reachable)

    @property
    def estimate(self) -> float:
        """Seconds the send should take."""
        return self.total / self.expected_rate if self.total else 0.0

    def busy_refusal(self) -> SenderBusyError | None:
        """Why no send can start now because another sender holds the issue (SQLite allows one), or None."""
        if self.busy is None:
            return None
        return _busy_error(self.issue.slug, self.busy)

    def refusal(self) -> SendError | None:
        """Why this plan must not be sent, or None."""
        slug = self.issue.slug
        started = self.audience.transports
        if self.resuming and started and self.transport.name not in started:
            first = sorted(started)[0]
            return SendError(
                slug,
                f"was started with the {', '.join(sorted(started))} transport; "
                f"this run would use {self.transport.name}",
                f"pass --transport {first} to go on with it, or --resend to start again",
            )
        if not self.total:
            logged = self.audience.logged
            if any(logged.values()):
                return SendError(
                    slug,
                    f"was sent already ({logged['sent']:,} sent, {logged['failed']:,} failed"
                    + (f", {logged['unknown']:,} outcome unknown" if logged["unknown"] else "")
                    + ")",
                    "pass --resend to send it to everyone again"
                    + (
                        f", or --include-new for the {self.audience.joined:,} who joined since"
                        if self.audience.joined and not self.include_new
                        else ""
                    ),
                )
            return SendError(
                slug,
                "has nobody to send to: no active subscribers",
                "add some with 'newsletter subscribers import FILE.csv'",
            )
        if self.cap is not None and self.total > self.cap and not self.allow_partial:
            return SendError(
                slug,
                f"needs {self.total:,} messages but only {self.cap:,} are left of the 24-hour quota",
                "pass --allow-partial to send those now and the rest later",
            )
        return None


def sendable_editions(issue: Issue) -> dict[str, Edition]:
    """The editions that may be sent (drafts may not); refuses an issue whose default edition is a draft."""
    if issue.default.draft:
        raise SendError(issue.default.path, "is a draft", "set draft: false in its front matter to send it")
    return {edition.lang: edition for edition in issue.editions if not edition.draft}


def build_templates(settings: Settings, templates: Templates, issue: Issue) -> dict[str, MessageTemplate]:
    """Render each edition's email once and lay out its message for personalising."""
    return {
        lang: MessageTemplate(render_email(edition, settings, templates), settings, slug=issue.slug)
        for lang, edition in sendable_editions(issue).items()
    }


def plan_send(
    settings: Settings,
    store: Store,
    issue: Issue,
    messages: dict[str, MessageTemplate],
    secret: bytes,
    *,
    transport: str | Transport | None = None,
    rate: float | None = None,
    resend: bool = False,
    include_new: bool = False,
    allow_partial: bool = False,
) -> SendPlan:
    """What a send of `issue` would do now (nothing is written; the transport is opened and asked its quota)."""
    if len(issue.slug) > ISSUE_LIMIT:
        raise SendError(
            issue.default.path,
            f"has a name of {len(issue.slug):,} characters; the send log keeps {ISSUE_LIMIT}",
            "rename the file with a shorter slug",
        )
    if transport is None or isinstance(transport, str):
        opened = open_transport(transport or settings.transport, settings, slug=issue.slug)
    else:
        opened = transport
    audience = plan_audience(
        store, issue.slug, list(messages), settings.language, resend=resend, include_new=include_new
    )
    wanted = rate or settings.rate
    started = time.monotonic()
    quota = opened.quota()
    latency = time.monotonic() - started if quota is not None else FIRST_LATENCY_GUESS
    if quota is None:
        per_second, cap = wanted, None
        source = f"{wanted:g}/s" if wanted else "as fast as the transport takes them"
    else:
        per_second = min(quota.max_send_rate, wanted) if wanted else quota.max_send_rate
        remaining = quota.remaining
        cap = None if remaining is None else int(remaining)
        left = "unlimited" if remaining is None else f"{int(remaining):,} left of {int(quota.max_24_hour_send or 0):,}"
        source = f"{per_second:g}/s (SES allows {quota.max_send_rate:g}/s; 24-hour quota: {left})"
    busy = other_sender(store, issue.slug) if store.engine.dialect.name == "sqlite" else None
    return SendPlan(
        settings, issue, messages, secret, opened, audience, resend, include_new and not resend,
        per_second, source, cap, quota, latency, allow_partial, busy,
    )  # fmt: skip


def recipient(settings: Settings, secret: bytes, subscriber_id: int, email: str, name: str) -> Recipient:
    """Who a message is for, with their signed unsubscribe token."""
    return Recipient(email, name, unsubscribe_token(secret, settings.list_id, subscriber_id))


def send_issue(
    plan: SendPlan,
    store: Store,
    *,
    stop: threading.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SendOutcome:
    """Send what `plan` says, recording every message in the send log; resumable after any stop or crash.

    Raises SendError when the plan is refused or another sender holds the issue (SQLite allows one).
    """
    refusal = plan.refusal()
    if refusal is not None:
        raise refusal
    settings, issue = plan.settings, plan.issue
    try:
        registration = register_sender(store, issue.slug, exclusive=store.engine.dialect.name == "sqlite")
    except SenderBusy as busy:
        raise _busy_error(issue.slug, busy.other) from None
    sender_id, sharing = registration.sender_id, registration.sharing
    try:
        with store.engine.connect() as conn:
            started = database_now(conn)
        if plan.resend:
            reset_for_resend(store, issue.slug)
        if plan.audience.audience.fresh or plan.include_new:
            snapshot_audience(store, issue.slug, list(plan.messages), settings.language)
        limiter = RateLimiter(plan.rate / max(1, sharing) if plan.rate else None)
        # Before the first start: every live sender has lowered its share (it renewed its row after this one was
        # registered, so it counted this one), and its last window at the old share has passed, however much the
        # limiter widened it (SETTLE); the last starts of senders that just ended age out too.
        if plan.rate and sharing > 1:
            seen = _wait_until_seen(store, sender_id, issue.slug, stop)
            if seen is None:
                return SendOutcome(Progress(total=plan.total), "stopped on request", limiter.rate, limiter.ceiling)
            limiter.set_ceiling(plan.rate / seen)
        settle = max(SETTLE if sharing > 1 else 0.0, registration.tail) if plan.rate else 0.0
        if settle and not _wait(stop, settle):
            return SendOutcome(Progress(total=plan.total), "stopped on request", limiter.rate, limiter.ceiling)
        if plan.rate and plan.rate > RAMP_ABOVE:
            limiter.ramp(RAMP_SECONDS)  # from the first start, not from before the wait (it would be over by then)
        loop = SendLoop(
            store=store,
            log=SendLog(store, issue.slug, sender_id, plan.transport.name, started),
            transport=plan.transport,
            messages=plan.messages,
            recipient=lambda d: recipient(settings, plan.secret, d.subscriber_id, d.email, d.name),
            sender_address=settings.from_address.addr_spec,
            issue=issue.slug,
            default_lang=settings.language,
            limiter=limiter,
            account_rate=plan.rate,
            cap=plan.cap,
            ambiguous_retries=settings.ambiguous_retries,
            progress=Progress(total=plan.total),
            stop=stop,
            on_progress=on_progress,
            latency=plan.latency,
            processes=worker_processes(plan),
            guard=reputation_guard(settings, store, issue.slug),
        )
        stopped = loop.run()
        return SendOutcome(loop.progress, stopped, limiter.rate, limiter.ceiling, loop.paused, loop.processes)
    finally:
        plan.transport.close()
        finish_sender(store, sender_id, issue.slug)


def reputation_guard(settings: Settings, store: Store, slug: str) -> ReputationGuard:
    """The guard of a send of `slug`: its thresholds, and the events SES tagged with the issue."""
    tag = issue_tag(slug)
    return ReputationGuard(
        lambda: send_feedback(store, slug, tag),
        settings.max_bounce_rate,
        settings.max_complaint_rate,
        settings.guard_minimum,
    )


def worker_processes(plan: SendPlan) -> int:
    """How many processes may make the attempts: SES at an account's rate that one interpreter cannot keep
    (PER_PROCESS_RATE) gets one per PER_PROCESS_RATE, as many as there are cores (two at least) up to MAX_PROCESSES;
    everything else runs in this process's threads. They are forked at the start, and the send loop hands them
    requests only while this sender's share of the rate passes PER_PROCESS_RATE (see send_processes)."""
    if plan.transport.name != "ses" or not plan.rate or plan.rate <= PER_PROCESS_RATE or not FORK:
        return 1
    return min(max(2, os.cpu_count() or 1), MAX_PROCESSES, math.ceil(plan.rate / PER_PROCESS_RATE))


def _busy_error(slug: str, other: OtherSender) -> SenderBusyError:
    return SenderBusyError(
        slug,
        f"is being sent by another process (pid {other.pid} on {other.host}, since "
        f"{other.started_at:%Y-%m-%d %H:%M:%S} UTC); SQLite allows one sender per issue",
        "wait for it to finish, or stop it; for several senders use PostgreSQL",
    )


def _wait_until_seen(store: Store, sender_id: str, slug: str, stop: threading.Event | None) -> int | None:
    """Heartbeat until every other live sender has renewed its row since this one registered (a sender that
    stops renewing is dead after STALE_AFTER and no longer waited for); how many share the rate then, or None
    if a stop was asked for. Evidence, not a guess at how late another sender's heartbeat may come under load."""
    with store.engine.connect() as conn:
        registered = database_now(conn)  # after the registration's commit: a renewal later than this counted it
    while True:
        sharing, unseen = heartbeat_and_count_unseen(store, sender_id, slug, registered)
        if unseen == 0:
            return max(1, sharing)
        if not _wait(stop, HEARTBEAT / 5):
            return None


def _wait(stop: threading.Event | None, seconds: float) -> bool:
    """Wait `seconds` (other senders lower their share meanwhile); False if a stop was asked for."""
    if stop is None:
        time.sleep(seconds)
        return True
    return not stop.wait(seconds)


def messages_left(counts: dict[str, int]) -> int:
    """How many messages of a send log (counts per state) a run would still hand over."""
    return counts["pending"] + counts["sending"] + counts["deferred"]


def test_copies(settings: Settings, messages: dict[str, MessageTemplate], address: str, secret: bytes) -> list[str]:
    """Build the `--test` copy of each edition for `address` and send none; the editions built."""
    token = unsubscribe_token(secret, settings.list_id, TEST_SUBSCRIBER_ID)
    for template in messages.values():
        try:
            template.personalise(Recipient(address, "", token))
        except MessageError as err:
            raise SendError(address, str(err), "use a plain ASCII address") from None
    return list(messages)


def send_test(
    settings: Settings,
    issue: Issue,
    transport: Transport,
    messages: dict[str, MessageTemplate],
    address: str,
    secret: bytes,
) -> list[tuple[str, SendStatus, str | None]]:
    """One copy of each edition to `address`; nothing is recorded in the send log."""
    results = []
    token = unsubscribe_token(secret, settings.list_id, TEST_SUBSCRIBER_ID)
    try:
        for lang, template in messages.items():
            try:
                raw, _ = template.personalise(Recipient(address, "", token))
            except MessageError as err:
                raise SendError(address, str(err), "use a plain ASCII address") from None
            outgoing = OutgoingMessage(settings.from_address.addr_spec, address, (raw,), issue.slug, lang, test=True)
            result = transport.send(outgoing)
            results.append((lang, result.status, result.error))
    finally:
        transport.close()
    return results


def dry_run(plan: SendPlan, store: Store) -> dict[str, int]:
    """Build every message the plan would hand over, and send none: messages per edition, and failures."""
    settings, messages = plan.settings, plan.messages
    built: dict[str, int] = {lang: 0 for lang in messages}
    built["invalid"] = 0
    for subscriber_id, email, name, lang in planned_recipients(store, plan.audience.audience):
        try:
            messages[lang].personalise(recipient(settings, plan.secret, subscriber_id, email, name))
        except MessageError:
            built["invalid"] += 1
            continue
        built[lang] += 1
    return built
