"""Run every doctor check in order: the secret, the message, the unsubscribe host, SES, then DNS and alignment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import Settings
from ..tokens import DEVELOPMENT_SECRET, SECRET_ENV, TEST_SUBSCRIBER_ID, unsubscribe_token
from .alignment import SES_DOMAIN, check_alignment, org_domain
from .dns_records import DKIM_CHECK, Dns, check_dkim, check_dmarc, check_spf
from .findings import Finding, Status, warned
from .mail import check_messages
from .secret import MIN_LENGTH, check_secret_key
from .ses_identity import SesFacts, candidates, read_identities, ses_findings, sesv2_client
from .unsubscribe import check_unsubscribe


@dataclass(frozen=True)
class DoctorOptions:
    """How to look: the transport the send will use, the name server (None: this machine's), the timeout of each
    network step in seconds, and DKIM selectors to look up (needed without SES)."""

    transport: str
    nameserver: tuple[str, int] | None = None
    timeout: float = 3.0
    dkim_selectors: tuple[str, ...] = ()


def _ascii_domain(domain: str) -> str:
    try:
        return domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        return domain.lower()


def _probe_token(settings: Settings) -> str:
    """An unsubscribe token for subscriber id 0 (no store gives it out), signed with the key when there is one."""
    key = os.environ.get(SECRET_ENV, "")
    try:
        secret = key.encode("utf-8") if len(key) >= MIN_LENGTH else DEVELOPMENT_SECRET.encode()
    except UnicodeEncodeError:  # not UTF-8: the secret key line fails; the test link needs no real signature
        secret = DEVELOPMENT_SECRET.encode()
    return unsubscribe_token(secret, settings.list_id, TEST_SUBSCRIBER_ID)


def run_doctor(settings: Settings, options: DoctorOptions) -> list[Finding]:
    """Every finding, in the order printed. Nothing is written anywhere; peers are only asked."""
    findings = [check_secret_key()]
    token = _probe_token(settings)
    report = check_messages(settings, token)
    findings += report.findings
    findings += check_unsubscribe(report.unsubscribe_url or settings.app(f"unsubscribe?token={token}"), options.timeout)

    address = f"{settings.from_address.username}@{_ascii_domain(settings.from_address.domain)}".lower()
    domain = _ascii_domain(settings.from_address.domain)
    org = org_domain(domain)
    ses = options.transport == "ses"
    facts = SesFacts(())
    dkim_domain: str | None = None
    spf_domain: str | None = None
    mail_from: str | None = ""
    if ses:
        facts = _ses_facts(settings, options, candidates(address, domain, org))
        findings += ses_findings(facts, address, domain, settings.ses.region)
        mail_from = None if facts.problem else next((i.mail_from for i in facts.identities if i.mail_from), "")
        if not facts.problem:
            signing = facts.signing
            signs = signing is not None and signing.dkim_on and signing.dkim_status == "SUCCESS"
            dkim_domain = signing.name if signing is not None and signs else SES_DOMAIN
            spf_domain = mail_from or SES_DOMAIN

    dns = Dns(options.nameserver, options.timeout)
    findings.append(check_spf(dns, domain, ses=ses, mail_from=mail_from))
    if ses and facts.problem and not options.dkim_selectors:
        dkim = warned(DKIM_CHECK, "the SES identity could not be read, so its DKIM records are not known", "see above")
    else:
        dkim = check_dkim(dns, domain, selectors=options.dkim_selectors, signing=facts.signing, ses=ses)
    findings.append(dkim)
    if options.dkim_selectors and dkim.status == Status.PASS and not ses:
        dkim_domain = domain  # the key you named is published under the From domain
    dmarc_finding, dmarc = check_dmarc(dns, domain, org)
    findings.append(dmarc_finding)
    findings.append(check_alignment(domain, dkim_domain=dkim_domain, spf_domain=spf_domain, dmarc=dmarc))
    return findings


def _ses_facts(settings: Settings, options: DoctorOptions, names: list[str]) -> SesFacts:
    from botocore.exceptions import BotoCoreError

    try:
        client = sesv2_client(settings, options.timeout)
    except BotoCoreError as err:
        return SesFacts((), " ".join(str(err).split()))
    return read_identities(client, names)
