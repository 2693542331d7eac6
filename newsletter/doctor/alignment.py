"""DMARC alignment of the From domain with the domains that DKIM signs as and that SPF checks (RFC 7489 §3.1):
relaxed, the two share an organisational domain (found with the Public Suffix List shipped in
publicsuffixlist); strict, they are equal."""

from __future__ import annotations

import functools
from typing import Any

from .dns_records import Dmarc
from .findings import Finding, failed, passed, warned

CHECK = "alignment"
SES_DOMAIN = "amazonses.com"  # SES's own MAIL FROM and DKIM domain, used when yours are not set up


@functools.lru_cache(maxsize=1)
def _suffixes() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()  # the list bundled with the package: nothing is downloaded


def org_domain(domain: str) -> str:
    """The organisational domain: the public suffix plus one label (papers.example.co.uk → example.co.uk)."""
    name = domain.lower().rstrip(".")
    return _suffixes().privatesuffix(name) or name


def aligned(signer: str, from_domain: str, mode: str) -> bool:
    """Whether `signer` aligns with `from_domain`: `s` strict (equal), else relaxed (same organisational domain)."""
    a, b = signer.lower().rstrip("."), from_domain.lower().rstrip(".")
    return a == b if mode == "s" else org_domain(a) == org_domain(b)


def check_alignment(
    from_domain: str, *, dkim_domain: str | None, spf_domain: str | None, dmarc: Dmarc | None
) -> Finding:
    """DMARC passes when DKIM or SPF passes for a domain that aligns with From; DKIM is the one that survives
    forwarding, so it is the one required here. `None` means the domain is not known."""
    adkim = dmarc.adkim if dmarc else "r"
    aspf = dmarc.aspf if dmarc else "r"
    mode = {"s": "strict", "r": "relaxed"}
    dkim_ok = dkim_domain is not None and aligned(dkim_domain, from_domain, adkim)
    spf_ok = spf_domain is not None and aligned(spf_domain, from_domain, aspf)
    if spf_domain is None:
        spf_text = "SPF's MAIL FROM is not known here"
    elif spf_ok:
        spf_text = f"SPF's MAIL FROM {spf_domain} aligns too"
    else:
        spf_text = f"SPF's MAIL FROM ({spf_domain}) does not, which DMARC does not need when DKIM aligns"
    if dkim_ok:
        return passed(
            CHECK, f"From {from_domain} aligns with DKIM d={dkim_domain} ({mode.get(adkim, adkim)}); {spf_text}"
        )
    if dkim_domain is None:
        return warned(
            CHECK,
            f"which domain DKIM signs as is not known, so its alignment with From {from_domain} cannot be told",
            "check the d= of the DKIM-Signature header in a message you received; it must end in "
            f"{org_domain(from_domain)}",
        )
    if spf_ok:
        return warned(
            CHECK,
            f"only SPF aligns (MAIL FROM {spf_domain}); DKIM d={dkim_domain} does not align with From {from_domain}, "
            "so forwarded mail fails DMARC",
            f"sign with a key under {org_domain(from_domain)}",
        )
    return failed(
        CHECK,
        f"From {from_domain} aligns with neither DKIM d={dkim_domain} nor SPF ({spf_domain or 'unknown'}): DMARC fails",
        f"sign with DKIM as {from_domain} (with SES: verify the domain with Easy DKIM)",
    )
