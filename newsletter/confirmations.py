"""The sign-up mail worker: sends the double opt-in mails that web sign-ups left due in the store, and the
welcome mails that confirmations left due.

The sign-up request only marks its pending row due (`request_subscription`, the same statement for a new
address as for a known one) and answers; the worker is woken after the answer, and waits WAKE_DELAY before
it sends, so the answer takes as long for a new address as for a known one. This worker, a thread of
`newsletter serve`, claims due rows (one process gets each, see `claim_confirmations`), sends each mail
through the configured transport and clears the mark. Whatever a stopped server left due is sent by the next one.

A confirmation (POST /confirm) makes the subscriber's one welcome mail due in the transaction that activates
them; the worker claims it (`claim_welcome`: final, so it goes out at most once, also after a crash), sends
it and records the outcome. The mails themselves are built by signup_mails.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from .config import Settings
from .issues import Edition
from .messages import MessageError
from .render.templates import Templates
from .signup_mails import CONFIRMATIONS_SLUG, WELCOME_SLUG, confirmation_message, latest_edition, welcome_message
from .store import (
    Store,
    Subscriber,
    SubscriberStatus,
    claim_confirmations,
    claim_welcome,
    confirmation_issue_time,
    due_welcomes,
    finish_confirmation,
    finish_welcome,
    get_subscriber,
    release_welcome,
)
from .transports import OutgoingMessage, SendStatus, Transport, open_transport

LEASE = dt.timedelta(minutes=10)  # a claim not finished by then (a crash) is due again
POLL_SECONDS = 5.0  # how often the worker looks for rows other processes marked due
WAKE_DELAY = 0.25  # seconds a wake waits before sending, so the sending never overlaps the answer that woke it
WELCOME_RETRY = dt.timedelta(minutes=1)  # a welcome mail the transport surely did not take is due again after this

log = logging.getLogger("newsletter.confirmations")


class ConfirmationWorker:
    """Sends due confirmation and welcome mails: `send_due()` once, or `start()` a thread that does it on every
    `wake()`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        templates: Templates,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = POLL_SECONDS,
        lease: dt.timedelta = LEASE,
        wake_delay: float = WAKE_DELAY,
    ) -> None:
        self.settings = settings
        self.store = store
        self.templates = templates
        self.secret = secret
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.lease = lease
        self.wake_delay = wake_delay
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Look for due mails in `wake_delay` seconds (a sign-up or confirmation just answered; its mail may be due).

        The web app calls this once a sign-up's answer has been written, for new and known addresses alike;
        the delay keeps the thread's work (store, rendering, SMTP) off the CPU while that answer is sent.
        """
        self._wake.set()

    def start(self) -> None:
        """Run in a daemon thread until stop(); it first sends what a previous run left due."""
        self._thread = threading.Thread(target=self._run, name="confirmations", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                while self.send_due() and not self._stop.is_set():
                    pass
            except Exception:  # a broken store or transport must not kill the thread; the rows stay due
                log.exception("confirmation mails not sent; trying again in %s s", self.poll_seconds)
            if self._wake.wait(self.poll_seconds) and not self._stop.is_set():
                self._stop.wait(self.wake_delay)  # the answer that woke it goes out first

    def send_due(self) -> int:
        """Claim and send one batch of due confirmation mails, then of welcome mails; the number claimed (0:
        nothing was due)."""
        return self.send_due_confirmations() + self.send_due_welcomes()

    def send_due_confirmations(self) -> int:
        """Claim and send one batch of due confirmation mails; the number claimed."""
        claimed = claim_confirmations(self.store, lease=self.lease)
        if not claimed:
            return 0
        transport = open_transport(self.settings.transport, self.settings, slug=CONFIRMATIONS_SLUG)
        try:
            for subscriber, lease_until in claimed:
                if subscriber.status not in {SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED}:
                    finish_confirmation(self.store, subscriber.id, lease_until)  # confirmed or suppressed since
                    continue
                result = transport.send(self._confirmation(subscriber))
                # A confirmation with no answer (ambiguous) may have arrived: it is not sent again, and asking
                # again on the form sends a new one. Throttled, retry and deferred ones go again after the lease.
                if result.status in {SendStatus.SENT, SendStatus.FAILED, SendStatus.AMBIGUOUS}:
                    finish_confirmation(self.store, subscriber.id, lease_until)
                if result.status != SendStatus.SENT:
                    log.warning("confirmation mail to subscriber %s not sent: %s", subscriber.id, result.error)
        finally:
            transport.close()
        return len(claimed)

    def send_due_welcomes(self) -> int:
        """Send one batch of due welcome mails (each built, then claimed, then handed over); the number claimed."""
        due = due_welcomes(self.store)
        if not due:
            return 0
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        latest: dict[str, Edition | None] = {}  # per language, looked up once a batch
        claimed = 0
        transport = open_transport(self.settings.transport, self.settings, slug=WELCOME_SLUG)
        try:
            for subscriber_id in due:
                subscriber = get_subscriber(self.store, subscriber_id)
                message = self._welcome(subscriber, latest, now) if subscriber else None
                subscriber = claim_welcome(self.store, subscriber_id)  # also read again: it may have left since
                if subscriber is None:  # another worker's
                    continue
                claimed += 1
                if message is None or subscriber.status != SubscriberStatus.ACTIVE:
                    finish_welcome(self.store, subscriber_id, "skipped" if message else "failed")
                    continue
                self._hand_over(transport, subscriber_id, *message)
        finally:
            transport.close()
        return claimed

    def _hand_over(self, transport: Transport, subscriber_id: int, message: OutgoingMessage, message_id: str) -> None:
        """Send a claimed welcome mail and record what became of it."""
        result = transport.send(message)
        if result.status == SendStatus.SENT:
            finish_welcome(self.store, subscriber_id, "sent", result.message_id or message_id)
            return
        log.warning("welcome mail to subscriber %s not sent: %s", subscriber_id, result.error)
        if result.status in {SendStatus.FAILED, SendStatus.AMBIGUOUS}:  # an ambiguous one may have arrived
            finish_welcome(self.store, subscriber_id, str(result.status))
        else:  # throttled, deferred, retry: surely not taken
            release_welcome(self.store, subscriber_id, dt.datetime.now(dt.UTC) + WELCOME_RETRY)

    def _welcome(
        self, subscriber: Subscriber, latest: dict[str, Edition | None], now: dt.datetime
    ) -> tuple[OutgoingMessage, str] | None:
        """The subscriber's welcome mail and its Message-ID; None (logged) when it cannot be built for them."""
        settings = self.settings
        lang = self._language(subscriber)
        if lang not in latest:
            latest[lang] = latest_edition(settings, lang, now)
        try:
            return welcome_message(
                settings,
                self.templates,
                self.secret,
                subscriber_id=subscriber.id,
                email=subscriber.email,
                name=subscriber.name,
                lang=lang,
                latest=latest[lang],
            )
        except MessageError as err:
            log.warning("welcome mail to subscriber %s cannot be built: %s", subscriber.id, err)
            return None

    def _language(self, subscriber: Subscriber) -> str:
        """The subscriber's language when the publication has it, else its default language."""
        settings = self.settings
        return subscriber.lang if subscriber.lang in settings.all_languages else settings.language

    def _confirmation(self, subscriber: Subscriber) -> OutgoingMessage:
        settings = self.settings
        lang = self._language(subscriber)
        issued = confirmation_issue_time(subscriber, self.clock())
        return confirmation_message(
            settings,
            self.templates,
            self.secret,
            subscriber_id=subscriber.id,
            email=subscriber.email,
            lang=lang,
            issued=issued,
        )
