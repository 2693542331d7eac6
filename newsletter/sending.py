"""The send loop: snapshot the audience into the send log, then rate-limit, claim, personalise, hand over, record.

It talks to the store only through store.py and to the peer only through the Transport protocol, so the
same loop runs against SQLite + files and PostgreSQL + SES. Every message is claimed in the log before it
leaves and recorded after, so a send killed at any instant resumes without skipping anyone; only the
message in flight at the crash can be sent twice (never with the file transport, whose files are
named by recipient).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .config import Settings
from .errors import NewsletterError, TransportError
from .issues import Edition, Issue
from .messages import MessageError, MessageTemplate, Recipient
from .ratelimit import QuotaExhausted, RateLimiter
from .render.email import render_email
from .render.templates import Templates
from .store import (
    ISSUE_LIMIT,
    AudiencePreview,
    Delivery,
    DeliveryState,
    SendLog,
    Store,
    audience_preview,
    delivery_counts,
    next_deliveries,
    reset_for_resend,
    snapshot_audience,
)
from .tokens import unsubscribe_token
from .transports.base import OutgoingMessage, SendStatus, Transport

BATCH = 500
TO_SEND = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DEFERRED)
TEST_SUBSCRIBER_ID = 0  # test copies carry a token that names nobody


class SendError(NewsletterError):
    """A send cannot start, or had to stop."""


@dataclass
class Progress:
    """Counts of the run so far, for the progress bar and the summary."""

    total: int  # messages this run means to hand over
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.deferred + self.skipped

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class SendOutcome:
    """How a run ended: its counts, and why it stopped early (None when it finished)."""

    progress: Progress
    stopped: str | None


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


def start_send(store: Store, issue: Issue, settings: Settings, *, resend: bool) -> int:
    """Snapshot the audience on the first run (or a --resend); returns the messages left to hand over.

    A resumed run keeps the snapshot of the first: subscribers who joined since get the next issue.
    """
    if len(issue.slug) > ISSUE_LIMIT:
        raise SendError(
            issue.default.path,
            f"has a name of {len(issue.slug):,} characters; the send log keeps {ISSUE_LIMIT}",
            "rename the file with a shorter slug",
        )
    counts = delivery_counts(store, issue.slug)
    if resend:
        reset_for_resend(store, issue.slug)
        counts = {state: 0 for state in counts}
    if not any(counts.values()):
        snapshot_audience(store, issue.slug, list(sendable_editions(issue)), settings.language)
        counts = delivery_counts(store, issue.slug)
        if not any(counts.values()):
            raise SendError(
                issue.slug,
                "has nobody to send to: no active subscribers",
                "add some with 'newsletter subscribers import FILE.csv'",
            )
    left = messages_left(counts)
    if not left:
        raise SendError(
            issue.slug,
            f"was sent already ({counts['sent']} sent, {counts['failed']} failed)",
            "pass --resend to send it to everyone again",
        )
    return left


def messages_left(counts: dict[str, int]) -> int:
    """How many messages of a send log (counts per state) a run would still hand over."""
    return sum(counts[state] for state in TO_SEND)


def recipient(settings: Settings, secret: bytes, subscriber_id: int, email: str, name: str) -> Recipient:
    """Who a message is for, with their signed unsubscribe token."""
    return Recipient(email, name, unsubscribe_token(secret, settings.list_id, subscriber_id))


def _deliveries_to_send(store: Store, issue: str) -> Iterator[Delivery]:
    """The deliveries left to hand over, in id order, fetched in batches (memory stays flat)."""
    after = 0
    while batch := next_deliveries(store, issue, after, BATCH, TO_SEND):
        yield from batch
        after = batch[-1].id


def send_edition(
    settings: Settings,
    store: Store,
    issue: Issue,
    transport: Transport,
    messages: dict[str, MessageTemplate],
    secret: bytes,
    *,
    limiter: RateLimiter,
    total: int,
    stop: threading.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SendOutcome:
    """Hand every pending message of `issue` to `transport`, recording each in the send log.

    Each delivery waits for its rate-limit slot, is then claimed (the last look at the subscriber) just
    before its message leaves, and is recorded after; a transport error stops the run with that message
    back in `pending`.
    """
    run = _SendRun(settings, issue, transport, messages, secret, limiter, SendLog(store), Progress(total=total))
    stopped: str | None = None
    try:
        for delivery in _deliveries_to_send(store, issue.slug):
            if stop is not None and stop.is_set():
                stopped = "stopped on request"
                break
            stopped = run.send_one(delivery)
            if stopped:
                break
            if on_progress:
                on_progress(run.progress)
    finally:
        run.log.close()
        transport.close()
    return SendOutcome(run.progress, stopped)


def edition_language(messages: dict[str, MessageTemplate], lang: str | None, settings: Settings) -> str:
    """The edition a subscriber reading `lang` gets: theirs, or the default language's when they have none
    or it is missing."""
    return lang if lang is not None and lang in messages else settings.language


@dataclass
class _SendRun:
    """What stays the same for every delivery of one run, and its counts."""

    settings: Settings
    issue: Issue
    transport: Transport
    messages: dict[str, MessageTemplate]
    secret: bytes
    limiter: RateLimiter
    log: SendLog
    progress: Progress
    sender: str = field(init=False)  # the envelope sender, worked out once

    def __post_init__(self) -> None:
        self.sender = self.settings.from_address.addr_spec

    def send_one(self, delivery: Delivery) -> str | None:
        """Wait for a slot, claim, personalise, hand over and record one delivery, counting it; returns why
        the whole run must stop, or None.

        The claim (the last look at the subscriber) comes after the rate-limit wait, so an unsubscribe
        recorded while this message waited for its slot is honoured; a skipped delivery still used a slot.
        """
        log, progress = self.log, self.progress
        try:
            self.limiter.acquire()  # before the claim: the wait must not sit between the last look and the send
        except QuotaExhausted:
            return "the 24-hour sending quota is used up"  # not claimed: it stays in the log to send later
        if not log.claim(delivery.id, self.transport.name):
            progress.skipped += 1
            return None
        template = self.messages[edition_language(self.messages, delivery.lang, self.settings)]
        try:
            raw, message_id = template.personalise(
                recipient(self.settings, self.secret, delivery.subscriber_id, delivery.email, delivery.name)
            )
        except MessageError as err:
            log.record(delivery.id, DeliveryState.FAILED, error=str(err))
            progress.failed += 1
            return None
        outgoing = OutgoingMessage(self.sender, delivery.email, raw, self.issue.slug, delivery.lang)
        try:
            result = self.transport.send(outgoing)
        except TransportError as err:
            log.record(delivery.id, DeliveryState.PENDING, error=str(err))  # it did not leave
            return str(err)
        log.record(
            delivery.id,
            DeliveryState(result.status.value),
            message_id=result.message_id or message_id,
            error=result.error,
        )
        if result.status == SendStatus.SENT:
            progress.sent += 1
        elif result.status == SendStatus.FAILED:
            progress.failed += 1
        else:
            progress.deferred += 1
        return None


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
    for lang, template in messages.items():
        try:
            raw, _ = template.personalise(Recipient(address, "", token))
        except MessageError as err:
            raise SendError(address, str(err), "use a plain ASCII address") from None
        result = transport.send(OutgoingMessage(settings.from_address.addr_spec, address, raw, issue.slug, lang))
        results.append((lang, result.status, result.error))
    transport.close()
    return results


def preview_audience(store: Store, issue: Issue, settings: Settings) -> AudiencePreview:
    """Who would get which edition now, and who is left out and why (nothing is written)."""
    return audience_preview(store, issue.slug, list(sendable_editions(issue)), settings.language)


def dry_run(
    settings: Settings, store: Store, issue: Issue, messages: dict[str, MessageTemplate], secret: bytes
) -> dict[str, int]:
    """Build every message a send would hand over, and send none: messages per edition, and failures."""
    from .store import SubscriberStatus, iter_subscribers

    built: dict[str, int] = {lang: 0 for lang in messages}
    built["invalid"] = 0
    for subscriber in iter_subscribers(store, SubscriberStatus.ACTIVE):
        lang = edition_language(messages, subscriber.lang, settings)
        try:
            messages[lang].personalise(recipient(settings, secret, subscriber.id, subscriber.email, subscriber.name))
        except MessageError:
            built["invalid"] += 1
            continue
        built[lang] += 1
    return built
