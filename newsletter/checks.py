"""`newsletter check`: validate settings, templates and every issue, and list each problem as one line.

It parses and renders but writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

from .config import CONFIG_FILE, Settings
from .errors import NewsletterError
from .issues import Edition, Issue, find_issue_files, group_editions, parse_issue
from .render.templates import Templates
from .tags import TagClash, TagNames


@dataclass(frozen=True)
class Problem:
    """One finding: `error` fails the check, `warning` does not."""

    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


def translation_problems(issue: Issue) -> list[Problem]:
    """Editions of one issue must carry the same papers in the same order, told apart by their links."""
    problems: list[Problem] = []
    base = issue.default
    base_keys = [_paper_key(s.links) for s in base.sections]
    for other in issue.editions[1:]:
        other_keys = [_paper_key(s.links) for s in other.sections]
        missing = [s for s, key in zip(base.sections, base_keys, strict=True) if key not in other_keys]
        extra = [s for s, key in zip(other.sections, other_keys, strict=True) if key not in base_keys]
        for section in missing:
            problems.append(
                Problem(
                    "error",
                    f"{other.path}: paper '{section.title}' of {base.path}:"
                    f"{section.line} is missing (translate it or remove it from both)",
                )
            )
        for section in extra:
            problems.append(
                Problem(
                    "error",
                    f"{other.path}: paper '{section.title}' is not in {base.path} "
                    "(add it there too, with the same links)",
                )
            )
        if not missing and not extra and base_keys != other_keys:
            problems.append(
                Problem(
                    "error",
                    f"{other.path}: papers are in another order than in {base.path} "
                    "(keep the same order in every edition)",
                )
            )
    return problems


def tag_problems(issues: list[Issue]) -> list[Problem]:
    """Tags of different files that would share one page (within a file, parse_issue refuses them), as the
    build would refuse them: the oldest issue's spelling is met first."""
    names = TagNames()
    problems = []
    hint = "spell them one way, or tell them apart by a letter or digit"
    for issue in reversed(issues):
        for edition in issue.editions:
            for tag in edition.tags:
                try:
                    names.add(tag, edition.path)
                except TagClash as clash:
                    problems.append(Problem("error", f"{clash.other_where}: {clash.describe()} ({hint})"))
    return problems


def _paper_key(links: tuple) -> tuple[str, ...]:
    return tuple(link.url for link in links)


def edition_problems(edition: Edition) -> list[Problem]:
    """Warnings an editor wants before sending: no summary, images without alt text, papers without links.

    A paper (a `##` section) without links gets no buttons, and translations cannot be matched to it.
    """
    problems: list[Problem] = []
    if not edition.summary:
        problems.append(
            Problem(
                "warning",
                f"{edition.path}: no summary (it is the email's preheader and the "
                "feed summary; add summary: to the front matter)",
            )
        )
    parts = [(edition.path, edition.body.intro_html)]
    parts += [(f"{edition.path}:{section.line}", section.html) for section in edition.sections]
    for where, html in parts:
        for src in images_without_alt(html):
            problems.append(Problem("warning", f"{where}: image {src} has no alt text (write ![what it shows]({src}))"))
    for section in edition.sections:
        if not section.links:
            problems.append(
                Problem(
                    "warning",
                    f"{edition.path}:{section.line}: paper '{section.title}' has no links (end it with a list "
                    "of links: they are its buttons, and translations are matched by them)",
                )
            )
    return problems


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.without_alt: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            values = dict(attrs)
            if not (values.get("alt") or "").strip():
                self.without_alt.append(values.get("src") or "(no src)")

    handle_startendtag = handle_starttag


def images_without_alt(html: str) -> list[str]:
    """The src of each `<img>` in `html` whose alt text is missing or blank."""
    if "<img" not in html.lower():
        return []
    parser = _Images()
    parser.feed(html)
    parser.close()
    return parser.without_alt


def settings_problems(settings: Settings) -> list[Problem]:
    """Settings that load but will hurt later: a list id derived from base_url changes when the archive moves,
    and every unsubscribe and confirm link already mailed is signed with it."""
    if settings.list_id_set:
        return []
    return [
        Problem(
            "warning",
            f"{CONFIG_FILE} [tool.newsletter] list_id: is not set, so it is derived from base_url "
            f"({settings.list_id}); moving the archive would change it and break every unsubscribe link already "
            f'mailed (add list_id = "{settings.list_id}")',
        )
    ]


def check_publication(settings: Settings, templates: Templates) -> tuple[list[Problem], int]:
    """(problems, number of editions checked) for the whole publication."""
    from .render.email import email_problems, render_email  # MJML and premailer load only when needed

    problems: list[Problem] = settings_problems(settings)
    for name in templates.template_names():  # the theme's and the publication's, each as it will be used
        try:
            templates.compile(name)
        except NewsletterError as err:  # names its file: templates/NAME:line or theme/NAME:line
            problems.append(Problem("error", str(err)))
        except Exception as err:  # noqa: BLE001 - every template failure is reported the same way
            line = getattr(err, "lineno", None)
            problems.append(Problem("error", f"{templates.where(name)}{f':{line}' if line else ''}: {err}"))
    editions: list[Edition] = []
    for path in find_issue_files(settings):
        try:
            editions.append(parse_issue(path, settings))
        except NewsletterError as err:
            problems.append(Problem("error", str(err)))
    try:
        issues = group_editions(editions, settings)
    except NewsletterError as err:
        return [*problems, Problem("error", str(err))], len(editions)
    if problems:  # broken templates would only repeat themselves below
        return problems, len(editions)
    problems.extend(tag_problems(issues))
    for issue in issues:
        problems.extend(translation_problems(issue))
        for edition in issue.editions:
            problems.extend(edition_problems(edition))
            try:
                email = render_email(edition, settings, templates)
            except NewsletterError as err:
                problems.append(Problem("error", str(err)))
                continue
            for severity, message in email_problems(email):
                problems.append(Problem(severity, f"{edition.path}: {message}"))
    return problems, len(editions)
