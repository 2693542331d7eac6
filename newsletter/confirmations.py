"""The confirmation-mail worker: sends the double opt-in mails that web sign-ups left due in the store.

The sign-up request only marks its pending row due (`request_subscription`, the same statement for a new
address as for a known one) and answers; the worker is woken after the answer, and waits WAKE_DELAY before
it sends, so the answer takes as long for a new address as for a known one. This worker, a thread of
`newsletter serve`, claims due rows (one process gets each, see `claim_confirmations`), sends each mail
through the configured transport and clears the mark. Whatever a stopped server left due is sent by the next one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage

from .config import Settings
from .render.templates import Templates
from .store import (
    Store,
    Subscriber,
    SubscriberStatus,
    claim_confirmations,
    confirmation_issue_time,
    finish_confirmation,
)
from .tokens import confirm_token
from .transports import OutgoingMessage, SendStatus, open_transport

LEASE = dt.timedelta(minutes=10)  # a claim not finished by then (a crash) is due again
POLL_SECONDS = 5.0  # how often the worker looks for rows other processes marked due
WAKE_DELAY = 0.25  # seconds a wake waits before sending, so the sending never overlaps the answer that woke it

log = logging.getLogger("newsletter.confirmations")


class ConfirmationWorker:
    """Sends due confirmation mails: `send_due()` once, or `start()` a thread that does it on every `wake()`."""

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
        """Look for due mails in `wake_delay` seconds (a sign-up just answered; its mail may be due).

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
        """Claim and send one batch of due confirmations; the number claimed (0: nothing was due)."""
        claimed = claim_confirmations(self.store, lease=self.lease)
        if not claimed:
            return 0
        transport = open_transport(self.settings.transport, self.settings, slug="confirmations")
        try:
            for subscriber, lease_until in claimed:
                if subscriber.status not in {SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED}:
                    finish_confirmation(self.store, subscriber.id, lease_until)  # confirmed or suppressed since
                    continue
                result = transport.send(self._message(subscriber))
                # A confirmation with no answer (ambiguous) may have arrived: it is not sent again, and asking
                # again on the form sends a new one. Throttled, retry and deferred ones go again after the lease.
                if result.status in {SendStatus.SENT, SendStatus.FAILED, SendStatus.AMBIGUOUS}:
                    finish_confirmation(self.store, subscriber.id, lease_until)
                if result.status != SendStatus.SENT:
                    log.warning("confirmation mail to subscriber %s not sent: %s", subscriber.id, result.error)
        finally:
            transport.close()
        return len(claimed)

    def _message(self, subscriber: Subscriber) -> OutgoingMessage:
        settings = self.settings
        lang = subscriber.lang if subscriber.lang in settings.all_languages else settings.language
        t = self.templates.strings_for(lang, settings.language)
        wording = settings.for_language(lang)
        issued = confirmation_issue_time(subscriber, self.clock())
        token = confirm_token(self.secret, settings.list_id, subscriber.id, issued)
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = settings.from_address
        message["To"] = subscriber.email
        message["Subject"] = t.get("confirm_mail_subject", "{title}").format(title=wording.title)
        if settings.reply_to:
            message["Reply-To"] = settings.reply_to
        message["Auto-Submitted"] = "auto-replied"  # RFC 3834: a reply to the sign-up, not a newsletter
        body = self.templates.render(
            "web/confirm_email.txt.j2",
            t=t,
            site_title=wording.title,
            confirm_url=settings.app(f"confirm?token={token}"),  # the web app's host, not the archive's
            postal_address=settings.postal_address,
        )
        message.set_content(body, cte="base64")
        return OutgoingMessage(
            settings.from_address.addr_spec, subscriber.email, message.as_bytes(), "confirmations", lang
        )
