"""SPF, DKIM and DMARC records of the sending domain, looked up with dnspython (a name server of your choice,
short timeouts). Each check returns one Finding; DMARC also returns the policy that alignment needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .findings import Finding, failed, passed, warned
from .ses_identity import Identity

SPF_CHECK = "spf"
DKIM_CHECK = "dkim"
DMARC_CHECK = "dmarc"
SPF_LOOKUP_LIMIT = 10  # RFC 7208 §4.6.4: more DNS-querying terms is a permanent error
SES_SPF = "include:amazonses.com"
POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class Answer:
    """The records of one name and type: empty when the name or the type does not exist; `problem` when the
    name server gave no usable answer."""

    records: tuple[str, ...] = ()
    problem: str = ""


@dataclass
class Dns:
    """Lookups through one resolver, `timeout` seconds each. After a timeout the server is taken as gone: later
    lookups report it at once instead of waiting again."""

    nameserver: tuple[str, int] | None
    timeout: float
    resolver: Any = None
    server: str = ""
    gone: str = ""
    cache: dict[tuple[str, str], Answer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import dns.resolver

        if self.nameserver is None:
            try:
                self.resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self.gone = "this machine has no name server configured (pass --nameserver ADDR)"
                return
            self.server = ", ".join(str(ns) for ns in self.resolver.nameservers)
        else:
            address, port = self.nameserver
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [address]
            self.resolver.port = port
            self.server = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        self.resolver.timeout = self.timeout
        self.resolver.lifetime = self.timeout

    def txt(self, name: str) -> Answer:
        return self._lookup(name, "TXT")

    def cname(self, name: str) -> Answer:
        return self._lookup(name, "CNAME")

    def _lookup(self, name: str, kind: str) -> Answer:
        if (name, kind) in self.cache:
            return self.cache[name, kind]
        if self.gone:
            return Answer(problem=self.gone)
        import dns.exception
        import dns.resolver

        try:
            answer = self.resolver.resolve(name, kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            result = Answer()
        except dns.exception.Timeout:
            self.gone = f"the name server {self.server} did not answer within {self.timeout:g} s"
            result = Answer(problem=self.gone)
        except dns.resolver.NoNameservers:
            result = Answer(problem=f"the name server {self.server} failed to answer for {name} (SERVFAIL or refused)")
        except dns.exception.DNSException as err:
            result = Answer(problem=f"{name}: {' '.join(str(err).split())}")
        else:
            if kind == "TXT":
                texts = (b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer)
            else:
                texts = (str(rdata.target).lower() for rdata in answer)
            result = Answer(tuple(texts))
        self.cache[name, kind] = result
        return result


# ---------------------------------------------------------------------------------------------------- SPF


def _spf_records(answer: Answer) -> list[str]:
    return [r for r in answer.records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]


def check_spf(dns: Dns, domain: str, *, ses: bool, mail_from: str | None) -> Finding:
    """The SPF record of the envelope domain: with SES, its custom MAIL FROM domain (or SES's own; None: SES could
    not be asked), else the From domain (an SMTP relay usually sends with it)."""
    if ses and mail_from is None:
        return warned(SPF_CHECK, "the MAIL FROM domain is not known: the SES identity could not be read", "see above")
    if ses and not mail_from:
        return passed(
            SPF_CHECK,
            "mail leaves with SES's own MAIL FROM (a subdomain of amazonses.com), whose SPF SES publishes",
            f"a custom MAIL FROM domain such as bounce.{domain} makes SPF align with From too",
        )
    name = mail_from or domain
    publish = f'publish TXT "v=spf1 {SES_SPF} ~all" at {name}' if ses else f'publish TXT "v=spf1 … ~all" at {name}'
    answer = dns.txt(name)
    if answer.problem:
        return warned(
            SPF_CHECK, f"could not look up {name}: {answer.problem}", "check the name server, or pass --nameserver"
        )
    records = _spf_records(answer)
    if not records:
        return failed(SPF_CHECK, f"{name} has no SPF record", publish)
    if len(records) > 1:
        return failed(
            SPF_CHECK, f"{name} has {len(records)} SPF records: receivers take that as an error", "merge them"
        )
    record = records[0]
    terms = record.split()[1:]
    if ses and SES_SPF not in (t.lower().lstrip("+") for t in terms):
        return failed(SPF_CHECK, f"{name}: {record!r} does not include amazonses.com", f"add {SES_SPF}")
    walk = _SpfWalk(dns)
    walk.visit(name, record, depth=0)
    if walk.problems:
        return failed(SPF_CHECK, f"{name}: {walk.problems[0]}", "fix the record: receivers give a permanent error")
    if walk.lookups > SPF_LOOKUP_LIMIT:
        return failed(
            SPF_CHECK,
            f"{name}: {record!r} needs {walk.lookups} DNS lookups, over SPF's limit of {SPF_LOOKUP_LIMIT}",
            "flatten some include: terms",
        )
    ending = _all_term(terms)
    if ending in {"+all", "all"}:
        return failed(
            SPF_CHECK, f"{name}: {record!r} ends with {ending}: anyone may send as {name}", "end it with ~all or -all"
        )
    if ending == "?all" or (ending is None and not any(t.lower().startswith("redirect=") for t in terms)):
        return warned(SPF_CHECK, f"{name}: {record!r} ends neutral", "end it with ~all or -all")
    unchecked = f" ({walk.unchecked})" if walk.unchecked else ""
    return passed(SPF_CHECK, f"{name}: {record!r}, {walk.lookups} of {SPF_LOOKUP_LIMIT} DNS lookups{unchecked}")


def _all_term(terms: list[str]) -> str | None:
    return next((t.lower() for t in terms if t.lower().lstrip("+-~?") == "all"), None)


class _SpfWalk:
    """Counts the DNS-querying terms of a record and of the records it includes (RFC 7208 §4.6.4)."""

    def __init__(self, dns: Dns) -> None:
        self.dns = dns
        self.lookups = 0
        self.problems: list[str] = []
        self.unchecked = ""

    def visit(self, name: str, record: str, depth: int) -> None:
        for term in record.split()[1:]:
            bare = term.lstrip("+-~?").lower()
            mechanism = bare.split(":", 1)[0].split("=", 1)[0].split("/", 1)[0]
            if mechanism not in {"include", "a", "mx", "ptr", "exists", "redirect"}:
                continue
            self.lookups += 1
            if mechanism not in {"include", "redirect"} or depth >= SPF_LOOKUP_LIMIT:
                continue
            target = bare.split(":" if mechanism == "include" else "=", 1)[-1]
            if "%" in target:  # a macro: the name depends on the message
                continue
            answer = self.dns.txt(target)
            if answer.problem:
                self.unchecked = f"{target} not checked: {answer.problem}"
                continue
            included = _spf_records(answer)
            if len(included) != 1:
                self.problems.append(f"{term} names {target}, which has {len(included) or 'no'} SPF record(s)")
                continue
            self.visit(target, included[0], depth + 1)


# ---------------------------------------------------------------------------------------------------- DKIM


def check_dkim(dns: Dns, domain: str, *, selectors: tuple[str, ...], signing: Identity | None, ses: bool) -> Finding:
    """The DKIM key records: the selectors given, else those of the SES identity that signs (Easy DKIM's three
    CNAMEs to amazonses.com, or your own key's selector)."""
    if selectors:
        return _selector_keys(dns, domain, selectors)
    if signing is not None and signing.dkim_tokens:
        if signing.dkim_origin == "EXTERNAL":
            return _selector_keys(dns, signing.name, signing.dkim_tokens)
        return _easy_dkim(dns, signing)
    if ses:
        what = (
            f"SES gave no DKIM tokens for {signing.name}"
            if signing
            else "no SES domain identity to take DKIM records from"
        )
        return warned(DKIM_CHECK, what, "see the ses dkim line")
    return warned(
        DKIM_CHECK,
        f"no selector to look up under {domain}",
        "pass --dkim-selector NAME: the s= of the DKIM-Signature header of a message you sent",
    )


def _easy_dkim(dns: Dns, signing: Identity) -> Finding:
    missing: list[str] = []
    for token in signing.dkim_tokens:
        name = f"{token}._domainkey.{signing.name}"
        answer = dns.cname(name)
        if answer.problem:
            return warned(DKIM_CHECK, f"could not look up {name}: {answer.problem}", "check the name server")
        target = answer.records[0] if answer.records else ""
        if not (target.startswith(f"{token.lower()}.dkim.") and target.endswith("amazonses.com.")):
            missing.append(name)
    count = len(signing.dkim_tokens)
    if missing:
        token = missing[0].split(".", 1)[0]
        return failed(
            DKIM_CHECK,
            f"{len(missing)} of {count} Easy DKIM CNAME records missing or wrong, first {missing[0]}",
            f"publish CNAME {missing[0]} → {token}.dkim.amazonses.com, and the others SES shows",
        )
    return passed(DKIM_CHECK, f"{count} of {count} Easy DKIM CNAME records under {signing.name} point to amazonses.com")


def _selector_keys(dns: Dns, domain: str, selectors: tuple[str, ...]) -> Finding:
    for selector in selectors:
        name = f"{selector}._domainkey.{domain}"
        answer = dns.txt(name)
        if answer.problem:
            return warned(DKIM_CHECK, f"could not look up {name}: {answer.problem}", "check the name server")
        tags = [_tags(record) for record in answer.records]
        keys = [t for t in tags if "p" in t]
        if not keys:
            return failed(DKIM_CHECK, f"{name} has no DKIM key record", "publish the TXT record your mail server shows")
        if not keys[0]["p"]:
            return failed(DKIM_CHECK, f"{name}: the key is revoked (empty p=)", "publish the current key")
    names = ", ".join(f"{s}._domainkey.{domain}" for s in selectors)
    return passed(DKIM_CHECK, f"DKIM key published at {names}")


def _tags(record: str) -> dict[str, str]:
    """`k=v; k=v` tags (DKIM, DMARC) with lower-case names; values keep their case."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), "".join(value.split()))
    return tags


# ---------------------------------------------------------------------------------------------------- DMARC


@dataclass(frozen=True)
class Dmarc:
    """The DMARC record that applies to the From domain."""

    name: str  # where it was found: _dmarc.<from domain> or _dmarc.<organisational domain>
    policy: str  # p= (or sp= for a subdomain under the organisational domain's record)
    adkim: str  # r (relaxed) or s (strict)
    aspf: str
    tags: dict[str, str]


def check_dmarc(dns: Dns, domain: str, org_domain: str) -> tuple[Finding, Dmarc | None]:
    """_dmarc.<domain> TXT v=DMARC1 with p= none at least, falling back to the organisational domain's
    (RFC 7489 §6.6.3)."""
    names = [f"_dmarc.{domain}"] + ([f"_dmarc.{org_domain}"] if org_domain != domain else [])
    publish = f'publish TXT "v=DMARC1; p=none; rua=mailto:dmarc@{org_domain}" at _dmarc.{org_domain}'
    for name in names:
        answer = dns.txt(name)
        if answer.problem:
            return warned(DMARC_CHECK, f"could not look up {name}: {answer.problem}", "check the name server"), None
        records = [r for r in answer.records if r.replace(" ", "").lower().startswith("v=dmarc1")]
        if not records:
            continue
        if len(records) > 1:
            return failed(
                DMARC_CHECK, f"{name} has {len(records)} DMARC records: receivers ignore both", "keep one"
            ), None
        tags = _tags(records[0])
        inherited = name != names[0]
        policy = (tags.get("sp") if inherited else None) or tags.get("p", "")
        if policy.lower() not in POLICIES:
            what = f"{name}: p={policy!r} is not none, quarantine or reject" if policy else f"{name} has no p= tag"
            return failed(DMARC_CHECK, what, "set p=none at least"), None
        found = Dmarc(name, policy.lower(), tags.get("adkim", "r").lower(), tags.get("aspf", "r").lower(), tags)
        applies = f", which applies to {domain} (its organisational domain's)" if inherited else ""
        if "rua" not in tags:
            todo = "add rua=mailto:… to receive the reports that show when p=quarantine is safe"
        elif found.policy == "none":
            todo = "p=none meets Gmail, Yahoo and Outlook.com; move to quarantine once the reports show only your mail"
        else:
            todo = ""
        return passed(DMARC_CHECK, f"{name}: p={found.policy}{applies}", todo), found
    return failed(DMARC_CHECK, f"no DMARC record at {' or '.join(names)}", publish), None
