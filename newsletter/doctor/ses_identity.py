"""The SES identity that covers the From address: verified for sending, with DKIM signing on (sesv2
GetEmailIdentity). It also says which domain DKIM signs as and the custom MAIL FROM domain, for the DNS checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings
from .findings import Finding, failed, passed, warned

IDENTITY_CHECK = "ses identity"
DKIM_CHECK = "ses dkim"


@dataclass(frozen=True)
class Identity:
    """What GetEmailIdentity says of one identity."""

    name: str  # an address or a domain
    kind: str  # EMAIL_ADDRESS | DOMAIN | MANAGED_DOMAIN
    verified: bool  # VerifiedForSendingStatus
    verification: str  # VerificationStatus: PENDING | SUCCESS | FAILED | TEMPORARY_FAILURE | NOT_STARTED
    dkim_on: bool  # DkimAttributes.SigningEnabled
    dkim_status: str  # DkimAttributes.Status
    dkim_origin: str  # AWS_SES (Easy DKIM) | EXTERNAL (your own key) | AWS_SES_<region> (Deterministic Easy DKIM)
    dkim_tokens: tuple[str, ...]  # Easy DKIM: the three CNAME tokens; your own key: its selector
    mail_from: str  # the custom MAIL FROM domain when SES says it works, else ""


@dataclass(frozen=True)
class SesFacts:
    """The identities found, most specific first (the address, its domain, then parents), or why none could be
    read (`problem`)."""

    identities: tuple[Identity, ...]
    problem: str = ""

    @property
    def sending(self) -> Identity | None:
        """The most specific verified identity: SES lets an address send when it or a domain above it is verified."""
        return next((i for i in self.identities if i.verified), None)

    @property
    def signing(self) -> Identity | None:
        """The domain identity whose DKIM key SES signs with: the most specific verified one, else the most specific
        one (an address identity has no key of its own)."""
        domains = [i for i in self.identities if i.kind != "EMAIL_ADDRESS"]
        return next((i for i in domains if i.verified), domains[0] if domains else None)


def candidates(address: str, domain: str, org_domain: str) -> list[str]:
    """The identities that may cover `address`: itself, its domain, and each parent down to the org domain."""
    names = [address, domain]
    labels = domain.split(".")
    for start in range(1, len(labels)):
        parent = ".".join(labels[start:])
        if len(parent) < len(org_domain) or not parent.endswith(org_domain):
            break
        names.append(parent)
    return names


def sesv2_client(settings: Settings, timeout: float) -> Any:
    """A sesv2 client in the configured region (and endpoint): `timeout` s to connect and to answer, no retries."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1}, connect_timeout=timeout, read_timeout=timeout)
    options: dict[str, Any] = {"region_name": settings.ses.region, "config": config}
    if settings.ses.endpoint_url:
        options["endpoint_url"] = settings.ses.endpoint_url
    return boto3.client("sesv2", **options)


def read_identities(client: Any, names: list[str]) -> SesFacts:
    """GetEmailIdentity for each name; one that SES does not know is left out. A refusal or a network failure
    gives the facts' `problem` instead."""
    from botocore.exceptions import BotoCoreError, ClientError

    found: list[Identity] = []
    for name in names:
        try:
            answer = client.get_email_identity(EmailIdentity=name)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code == "NotFoundException":
                continue
            message = err.response.get("Error", {}).get("Message", "")
            return SesFacts(tuple(found), f"SES {code}: {' '.join(message.split())}")
        except BotoCoreError as err:
            return SesFacts(tuple(found), " ".join(str(err).split()))
        found.append(_identity(name, answer))
    return SesFacts(tuple(found))


def _identity(name: str, answer: dict[str, Any]) -> Identity:
    dkim = answer.get("DkimAttributes") or {}
    mail_from = answer.get("MailFromAttributes") or {}
    return Identity(
        name=name,
        kind=str(answer.get("IdentityType", "")),
        verified=bool(answer.get("VerifiedForSendingStatus")),
        verification=str(answer.get("VerificationStatus", "")),
        dkim_on=bool(dkim.get("SigningEnabled")),
        dkim_status=str(dkim.get("Status", "")),
        dkim_origin=str(dkim.get("SigningAttributesOrigin", "")),
        dkim_tokens=tuple(str(token) for token in dkim.get("Tokens") or ()),
        mail_from=str(mail_from.get("MailFromDomain") or "")
        if mail_from.get("MailFromDomainStatus") == "SUCCESS"
        else "",
    )


def ses_findings(facts: SesFacts, address: str, domain: str, region: str) -> list[Finding]:
    """The identity line and the DKIM line."""
    if facts.problem:
        what = f"could not read the SES identities of {address} in {region}: {facts.problem}"
        return [warned(IDENTITY_CHECK, what, "check the AWS credentials, the region and the network")]
    create = f"create the domain identity {domain} in SES ({region}) with Easy DKIM and publish its 3 CNAME records"
    if not facts.identities:
        return [
            failed(IDENTITY_CHECK, f"no SES identity in {region} covers {address}", create),
            failed(DKIM_CHECK, f"no SES identity signs for {domain}", create),
        ]
    sending = facts.sending
    if sending is None:
        first = facts.identities[0]
        identity = failed(
            IDENTITY_CHECK,
            f"{first.name} is an SES identity in {region} but not verified for sending "
            f"(VerificationStatus {first.verification or 'unknown'})",
            "publish the DNS records SES shows for it, then wait for SES to verify them",
        )
    else:
        kind = "address" if sending.kind == "EMAIL_ADDRESS" else "domain"
        identity = passed(
            IDENTITY_CHECK, f"{address} may send: the {kind} identity {sending.name} is verified in {region}"
        )
    return [identity, _dkim_finding(facts.signing, domain, create)]


def _dkim_finding(signing: Identity | None, domain: str, create: str) -> Finding:
    if signing is None:
        return failed(
            DKIM_CHECK,
            f"only the address is an SES identity: SES signs with its own domain, which does not align with {domain}",
            create,
        )
    if not signing.dkim_on:
        return failed(
            DKIM_CHECK,
            f"DKIM signing is off for {signing.name}",
            f"turn on Easy DKIM: SES console, Identities, {signing.name}, Authentication",
        )
    if signing.dkim_status != "SUCCESS":
        return failed(
            DKIM_CHECK,
            f"DKIM for {signing.name} is {signing.dkim_status or 'not started'}, not SUCCESS",
            "publish its DKIM records (see the dkim line) and wait for SES to find them",
        )
    kind = "your own key (BYODKIM)" if signing.dkim_origin == "EXTERNAL" else "Easy DKIM"
    return passed(DKIM_CHECK, f"SES signs as {signing.name} with {kind} (status SUCCESS)")
