"""The `newsletter` command: click commands only. Options → one library call → printed result.

Our errors become one `Error: …` line and exit 1; usage mistakes stay click's (exit 2).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli_errors import OneLineUsageGroup, reports_errors
from .config import TRANSPORTS, Settings, find_root, load_settings
from .errors import NewsletterError, one_line


class MessageRate(click.FloatRange):
    """Messages per second: at least 0.01 and finite (FloatRange alone lets nan and inf through)."""

    name = "rate"

    def __init__(self) -> None:
        super().__init__(min=0.01)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of messages per second", param, ctx)
        return number


def settings_of(ctx: click.Context) -> Settings:
    """The settings of the publication chosen with --root (or found above the current folder)."""
    root = ctx.obj.get("root")
    return load_settings(Path(root) if root else find_root(Path.cwd()))


@click.group(name="newsletter", cls=OneLineUsageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="The publication folder (the one whose pyproject.toml has [tool.newsletter]).",
)
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """Publish a newsletter kept in a git repo: email, feeds, archive, sending."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where to write the site [site/].")
@click.option("--no-cache", is_flag=True, help="Parse and render everything, ignoring .cache/.")
@click.option("--future", is_flag=True, help="Include the issues whose publication time is still to come (a preview).")
@click.pass_context
@reports_errors
def build(ctx: click.Context, out: Path | None, no_cache: bool, future: bool) -> None:
    """Build the archive site: pages, tag pages, Atom/RSS feeds, sitemap. An issue whose time (publish_at, or its
    date at publish_time) is still to come is left out, as a draft is, unless --future.

    Example: newsletter build --out site
    """
    from .render.site import build_site

    settings = settings_of(ctx)
    now = dt.datetime.now(dt.UTC)
    result = build_site(settings, out=out, use_cache=not no_cache, now=now, future=future)
    click.echo(
        f"Built {_shown(result.out)}/: {result.issues} issue(s), {result.files} files "
        f"({result.pages_rendered} pages rendered, {result.pages_reused} unchanged) in {result.seconds:.2f} s"
    )
    if result.not_yet_due:
        from .time_words import on_clock, span

        slug, at = result.not_yet_due[0]
        count = len(result.not_yet_due)
        head = f"Included {count} issue(s) not yet due" if future else f"Left out {count} issue(s) not yet due"
        tail = "" if future else "; build --future includes them"
        click.echo(f"{head} (next: {slug} at {on_clock(at, settings.timezone)}, in {span(at - now)}{tail})")


@cli.command()
@click.pass_context
@reports_errors
def check(ctx: click.Context) -> None:
    """Check settings, templates and every issue (translations, email size); exit 1 on any error.

    Example: newsletter check
    """
    from .checks import check_publication
    from .render.templates import load_templates

    settings = settings_of(ctx)
    problems, count = check_publication(settings, load_templates(settings))
    for problem in problems:
        click.echo(str(problem), err=True)
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    summary = f"checked {count} edition file(s): {errors} error(s), {warnings} warning(s)"
    if errors:
        raise click.ClickException(summary)
    click.echo(summary)


@cli.command()
@click.argument("title")
@click.option("--slug", help="The name part of the file (ASCII letters, digits, '-'); made from TITLE by default.")
@click.option("--date", "date_text", help="The issue date, YYYY-MM-DD [today].")
@click.option("--lang", help="Write a translation (adds .LANG to the file name).")
@click.pass_context
@reports_errors
def new(ctx: click.Context, title: str, slug: str | None, date_text: str | None, lang: str | None) -> None:
    """Create an issue file from the theme's issue.md.j2 or templates/issue.md.j2 (a draft until draft: true goes).

    Example: newsletter new "Top ML Papers of the Week" --slug top-ml-papers
    """
    from .render.templates import load_templates

    settings = settings_of(ctx)
    if "\n" in title or "\r" in title:
        raise click.BadParameter("the title must be one line", param_hint="TITLE")
    try:
        date = dt.date.fromisoformat(date_text) if date_text else dt.date.today()
    except ValueError:
        raise click.BadParameter(f"{date_text!r} is not a date (use YYYY-MM-DD)", param_hint="--date") from None
    name = slug or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name or ""):
        raise click.BadParameter(
            f"{name!r} cannot be a file name; pass --slug in ASCII, e.g. --slug weekly", param_hint="--slug"
        )
    if lang and lang not in settings.languages:
        raise click.BadParameter(
            f"{lang!r} is not one of the other languages {settings.languages}", param_hint="--lang"
        )
    path = settings.issues_dir / f"{date.isoformat()}-{name}{'.' + lang if lang else ''}.md"
    if path.exists():
        raise NewsletterError(_shown(path), "already exists", "edit it, or choose another --slug or --date")
    text = load_templates(settings).render(
        "issue.md.j2", title=json.dumps(title, ensure_ascii=False)[1:-1], date=date.isoformat()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"Created {_shown(path)}")


@cli.command()
@click.argument("issue", required=False)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Where to write the preview [preview/<slug>/]."
)
@click.option("--serve", is_flag=True, help="Serve a live preview of every issue until Ctrl-C (it reloads on edits).")
@click.option("--open", "open_browser", is_flag=True, help="Serve the preview and open it in a browser.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to serve the preview on.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535), help="The port to serve on.")
@click.pass_context
@reports_errors
def preview(
    ctx: click.Context, issue: str | None, out: Path | None, serve: bool, open_browser: bool, host: str, port: int
) -> None:
    """Write each edition's email.html and email.txt as a sample subscriber gets them; with --serve, serve every
    issue's email at 375 and 600 px, its text part and its archive page, reloading as the files change.

    ISSUE is the issue's slug or file name. Example: newsletter preview 2023-09-25-top-ml-papers --open
    """
    from .issues import find_issue

    serve = serve or open_browser
    if issue is None and not serve:
        raise click.UsageError("Missing argument 'ISSUE' (it may be left out with --serve).")
    if issue is None and out is not None:
        raise click.UsageError("--out needs ISSUE: it is where that issue's preview is written.")
    settings = settings_of(ctx)
    page = ""
    if issue is not None:
        from .preview import write_preview
        from .render.templates import load_templates

        found = find_issue(settings, issue)
        folder = out or settings.root / "preview" / found.slug
        if out is not None:
            from .render.site import check_out_folder

            check_out_folder(out.resolve(), settings, hint="write the preview into a folder of its own: preview/")
        for path in write_preview(settings, load_templates(settings), found, folder):
            click.echo(f"Wrote {_shown(path)}")
        page = f"issues/{found.slug}/{found.default.lang}/"
    if serve:
        from .preview_server import serve_preview
        from .preview_state import PreviewState

        def announce(url: str) -> None:
            click.echo(f"Previewing at {url} (Ctrl-C to stop)")
            if open_browser:
                import threading
                import webbrowser

                threading.Thread(target=webbrowser.open, args=(url + page,), daemon=True).start()

        serve_preview(PreviewState(settings.root), host=host, port=port, announce=announce)


# ---------------------------------------------------------------- subscribers


def _store(settings: Settings) -> Any:
    from .store import open_store

    return open_store(settings.database_url, setting=settings.database_setting)


@cli.group()
def subscribers() -> None:
    """Manage the subscriber list (SQLite in subscribers/ by default; NEWSLETTER_DATABASE_URL for another)."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--lang", help="The edition language they get [the default language].")
@click.pass_context
@reports_errors
def subscribers_add(ctx: click.Context, email: str, name: str, lang: str | None) -> None:
    """Add one active subscriber. Example: newsletter subscribers add kim@example.com --lang ko"""
    from .store import add_subscriber
    from .subscriber_csv import name_problem, normalise_address

    settings = settings_of(ctx)
    try:
        address = normalise_address(email)
    except ValueError as err:
        raise click.BadParameter(f"'{one_line(email)}' is not a valid address ({err})", param_hint="EMAIL") from None
    if lang is not None and lang not in settings.all_languages:
        raise click.BadParameter(
            f"'{one_line(lang)}' is not one of {', '.join(settings.all_languages)}", param_hint="--lang"
        )
    problem = name_problem(name)
    if problem:
        raise click.BadParameter(problem, param_hint="--name")
    with _store(settings) as store:
        subscriber = add_subscriber(store, address, name=name, lang=lang, source="cli")
    click.echo(f"Added {subscriber.email} ({subscriber.status})")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Import the good rows even when some rows are bad.")
@click.pass_context
@reports_errors
def subscribers_import(ctx: click.Context, file: Path, skip_invalid: bool) -> None:
    """Import subscribers from a CSV file with a header row (email; optional name, lang; other columns kept).

    Every bad row is listed with its line number; nothing is imported unless all rows are good or
    --skip-invalid is given. Unsubscribed, bounced or complained addresses are never re-activated.
    Example: newsletter subscribers import subscribers/example.csv
    """
    from .subscriber_csv import import_subscribers

    settings = settings_of(ctx)
    with _store(settings) as store:
        report = import_subscribers(store, file, settings.all_languages, skip_invalid=skip_invalid)
    for problem in report.problems:
        click.echo(problem, err=True)
    if report.problems and not skip_invalid:
        raise click.ClickException(
            f"{one_line(str(file))}: {len(report.problems)} bad row(s) of {report.rows}; nothing imported "
            "(fix them, or pass --skip-invalid to import the good rows)"
        )
    counts = report.counts
    click.echo(
        f"Imported {counts.added} new subscriber(s) from {report.rows} row(s): {counts.already} already on "
        f"the list (left as they are), {counts.suppressed} removed earlier, {report.duplicates} duplicate(s), "
        f"{len(report.problems)} bad row(s) skipped"
    )


@subscribers.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--status", type=click.Choice(["pending", "active", "unsubscribed", "bounced", "complained"]))
@click.option("--force", is_flag=True, help="Replace FILE if it exists (never the publication's own files).")
@click.pass_context
@reports_errors
def subscribers_export(ctx: click.Context, file: Path | None, status: str | None, force: bool) -> None:
    """Write subscribers as CSV to FILE (or standard output, also for `-`); cells never start a spreadsheet formula.

    FILE is created 0600 and whole or not at all; an existing one is replaced only with --force, and the
    publication's pyproject.toml, issues/ and templates/ never are. Example: newsletter subscribers export backup.csv
    """
    import sys

    from .store import SubscriberStatus
    from .subscriber_csv import export_subscribers, export_to_file

    settings = settings_of(ctx)
    chosen = SubscriberStatus(status) if status else None
    with _store(settings) as store:
        if file is None or str(file) == "-":
            export_subscribers(store, sys.stdout, chosen)
            return
        count = export_to_file(store, file, chosen, root=settings.root, force=force)
    click.echo(f"Exported {count} subscriber(s) to {one_line(str(file))}", err=True)


@subscribers.command("list")
@click.option("--status", type=click.Choice(["pending", "active", "unsubscribed", "bounced", "complained"]))
@click.pass_context
@reports_errors
def subscribers_list(ctx: click.Context, status: str | None) -> None:
    """List subscribers: address, status, language, name. Example: newsletter subscribers list --status active"""
    from .store import SubscriberStatus, iter_subscribers

    settings = settings_of(ctx)
    with _store(settings) as store:
        for s in iter_subscribers(store, SubscriberStatus(status) if status else None):
            click.echo(f"{s.email}\t{s.status}\t{s.lang or '-'}\t{s.name}")


@subscribers.command("remove")
@click.argument("email")
@click.pass_context
@reports_errors
def subscribers_remove(ctx: click.Context, email: str) -> None:
    """Erase a subscriber; a hash of the address is kept so it is never imported and mailed again.

    Example: newsletter subscribers remove kim@example.com
    """
    from .store import remove_subscriber

    settings = settings_of(ctx)
    with _store(settings) as store:
        if not remove_subscriber(store, email):
            raise NewsletterError(email, "is not on the list", "check the address with 'newsletter subscribers list'")
    click.echo(f"Removed {email}")


@subscribers.command("purge")
@click.option(
    "--days",
    default=7,
    show_default=True,
    type=click.IntRange(min=1),
    help="Delete sign-ups left unconfirmed for this many days.",
)
@click.pass_context
@reports_errors
def subscribers_purge(ctx: click.Context, days: int) -> None:
    """Delete web sign-ups that were never confirmed (no consent, so no data kept). Run it daily.

    Example: newsletter subscribers purge --days 7
    """
    import datetime as dt

    from .store import purge_unconfirmed

    settings = settings_of(ctx)
    with _store(settings) as store:
        count = purge_unconfirmed(store, dt.timedelta(days=days))
    click.echo(f"Deleted {count} unconfirmed sign-up(s) older than {days} day(s)")


@subscribers.command("count")
@click.pass_context
@reports_errors
def subscribers_count(ctx: click.Context) -> None:
    """Count subscribers per status. Example: newsletter subscribers count"""
    from .store import count_subscribers

    settings = settings_of(ctx)
    with _store(settings) as store:
        counts = count_subscribers(store)
    for status, count in counts.items():
        click.echo(f"{status:<13}{count:>9,}")
    click.echo(f"{'total':<13}{sum(counts.values()):>9,}")


# ---------------------------------------------------------------- sending


@cli.command()
@click.argument("issue", required=False)
@click.option("--due", is_flag=True, help="Send every issue whose time has come (for a timer): no question asked.")
@click.option("--late-ok", is_flag=True, help="With --due: also finish sends started more than max_late ago.")
@click.option(
    "--transport",
    "transport_name",
    type=click.Choice(TRANSPORTS),
    help="Where messages go [transport in the settings, file by default].",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--test", "test_address", metavar="ADDR", help="Send one copy of each edition to ADDR only.")
@click.option("--dry-run", is_flag=True, help="Build every message, send none, and say who would get what.")
@click.option("--rate", type=MessageRate(), help="At most this many messages per second.")
@click.option("--allow-partial", is_flag=True, help="With SES: send what the 24-hour quota allows, the rest later.")
@click.option("--resend", is_flag=True, help="Send an issue that was sent already to everyone again.")
@click.option(
    "--include-new",
    is_flag=True,
    help="Resuming: also send to those who subscribed after the first run (nobody gets it twice).",
)
@click.pass_context
@reports_errors
def send(ctx: click.Context, issue: str | None, due: bool, late_ok: bool, **options: Any) -> None:
    """Send ISSUE to every active subscriber, each in their language's edition; resumable. With --due, send
    every issue whose publication time has come and that is not fully sent, at most max_late after it.

    Killed or stopped (Ctrl-C) at any point, the same command sends only what was not sent.
    Example: newsletter send 2023-09-25-top-ml-papers
    """
    from .cli_send import run_due, run_send

    if due:
        if issue is not None:
            raise click.UsageError("give ISSUE or --due, not both (naming an issue sends it whatever its time)")
        for option in ("test_address", "resend", "include_new"):
            if options[option]:
                flag = "--test" if option == "test_address" else "--" + option.replace("_", "-")
                raise click.UsageError(f"{flag} sends one named issue: it does not go with --due")
        now = dt.datetime.now(dt.UTC)
        options = {key: options[key] for key in ("transport_name", "dry_run", "rate", "allow_partial")}
        ctx.exit(run_due(settings_of(ctx), now=now, late_ok=late_ok, **options))
    if issue is None:
        raise click.UsageError("give the ISSUE to send, or --due to send every issue whose time has come")
    if late_ok:
        raise click.UsageError("--late-ok goes with --due (naming an issue sends it whatever its time)")
    run_send(settings_of(ctx), issue, **options)  # the options, named and typed, are run_send's arguments


@cli.command()
@click.argument("issue")
@click.option(
    "--problems", default=20, show_default=True, type=click.IntRange(min=0), help="List this many failed or deferred."
)
@click.pass_context
@reports_errors
def status(ctx: click.Context, issue: str, problems: int) -> None:
    """Show the publication time of ISSUE and where it stands for send --due, how far its send got (messages
    per state), then the failed and deferred ones with the server's words.
    Example: newsletter status 2023-09-25-top-ml-papers
    """
    from .issues import find_issue
    from .schedule import Standing, schedule
    from .store import DeliveryState, ambiguous_outcomes, delivery_counts, delivery_problems, other_sender
    from .time_words import on_clock, setting_span, span

    settings = settings_of(ctx)
    found = find_issue(settings, issue)
    now = dt.datetime.now(dt.UTC)
    with _store(settings) as store:
        (standing,) = schedule(settings, [found], store, now)
        counts = delivery_counts(store, found.slug)
        listed = delivery_problems(store, found.slug, problems) if problems else []
        lost, concerned = ambiguous_outcomes(store, found.slug)
        holder = other_sender(store, found.slug) if counts[DeliveryState.SENDING] else None
    late, limit = span(abs(standing.late)), setting_span(settings.max_late)
    until = on_clock(standing.at + settings.max_late, settings.timezone)
    where = {
        Standing.DRAFT: "a draft: send --due never sends it, build leaves it out",
        Standing.SCHEDULED: f"scheduled, in {late}: send --due sends it then, build shows it from then",
        Standing.DUE: f"due ({late} ago): send --due sends it until {until} (max_late {limit})",
        Standing.RESUMABLE: f"due ({late} ago), not fully sent: send --due resumes it until {until}",
        Standing.SENT: f"its time came {late} ago; fully sent",
        Standing.MISSED: f"past max_late ({limit}) by {span(standing.late - settings.max_late)}, never sent: "
        f"send --due will not start it ('newsletter send {found.slug}' sends it anyway)",
        Standing.UNFINISHED: f"past max_late ({limit}), not fully sent: 'newsletter send --due --late-ok' finishes it",
    }[standing.standing]
    source = "publish_at" if found.publish_at is not None else "date at publish_time"
    click.echo(f"Time: {on_clock(standing.at, settings.timezone)} ({source}), {where}\n")
    for state, count in counts.items():
        click.echo(f"{state:<9}{count:>9,}")
    click.echo(f"{'total':<9}{sum(counts.values()):>9,}")
    click.echo(f"{'no answer':<9}{lost:>9,} request(s) left and got no answer, for {concerned:,} recipient(s)")
    if holder is not None:
        since = f"{holder.started_at:%Y-%m-%d %H:%M:%S} UTC"
        click.echo(f"\nBeing sent by pid {holder.pid} on {holder.host} since {since}.")
    elif counts[DeliveryState.SENDING]:
        click.echo(
            f"\n{counts[DeliveryState.SENDING]:,} message(s) in 'sending' belong to a send that stopped or was "
            f"killed; 'newsletter send {found.slug}' sends them (those whose requests had left may arrive twice)."
        )
    unsent = counts[DeliveryState.FAILED] + counts[DeliveryState.DEFERRED] + counts[DeliveryState.UNKNOWN]
    if listed:
        click.echo(
            f"\nNot sent ({len(listed):,} of {unsent:,}; failed is for good, deferred is retried by a resumed send, "
            "unknown may have arrived and is not sent again):"
        )
        for problem in listed:
            click.echo(f"{problem.state:<9}{problem.email}\t{problem.error or '-'}")


# ---------------------------------------------------------------- the web app and events


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="The port.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Worker threads.")
@click.option("--trusted-proxy", metavar="ADDR", help="The reverse proxy whose X-Forwarded-For to believe.")
@click.option(
    "--dev",
    "development",
    is_flag=True,
    help="Development mode: without NEWSLETTER_SECRET_KEY, check links with the public development secret "
    "(loopback only; every page says so).",
)
@click.pass_context
@reports_errors
def serve(ctx: click.Context, host: str, port: int, threads: int, trusted_proxy: str | None, development: bool) -> None:
    """Run the web app under waitress: the archive, unsubscribe, subscribe, confirm, preferences, SNS events.

    Needs NEWSLETTER_SECRET_KEY (the sender's). Example: newsletter serve --host 127.0.0.1 --port 8000 (put it
    behind an HTTPS reverse proxy); to try it locally: newsletter serve --dev
    """
    from .server import serve as run_server

    settings = settings_of(ctx)
    shown = f"[{host}]" if ":" in host else host

    def announce() -> None:  # once the port is bound: a refused --host or --port says so instead
        click.echo(f"Serving on http://{shown}:{port}/{' in development mode' if development else ''} (Ctrl-C to stop)")
        if not (settings.root / "site" / "index.html").is_file():
            click.echo("Note: site/ is not built, so the archive's pages answer 404 (run newsletter build)")

    run_server(
        settings,
        host=host,
        port=port,
        threads=threads,
        trusted_proxy=trusted_proxy,
        development=development,
        announce=announce,
    )


@cli.command()
@click.option("--queue-url", help="The SQS queue [ses.queue_url in the settings, or NEWSLETTER_SES_QUEUE_URL].")
@click.option("--once", is_flag=True, help="Stop when the queue is empty instead of waiting for more.")
@click.option(
    "--receivers",
    default=16,  # event_queue.RECEIVERS and MOST_RECEIVERS (not imported here: the CLI loads lazily)
    show_default=True,
    type=click.IntRange(1, 32),
    help="Threads long-polling the queue at once (each ReceiveMessage gives at most 10 messages).",
)
@click.pass_context
@reports_errors
def events(ctx: click.Context, queue_url: str | None, once: bool, receivers: int) -> None:
    """Apply SES's events from an SQS queue: bounces and complaints (those addresses are never mailed again),
    and sends, deliveries, rejects, delays, opens and clicks for `newsletter report`.

    Permanent bounces mark an address bounced, complaints complained, transient bounces are counted; an event
    delivered twice counts once. A message is deleted from the queue only after its events are committed. With
    [tool.newsletter.ses] topic_arn set, a message another SNS topic sent is left in the queue (refused). Ctrl-C
    or SIGTERM stops after the batch being applied.
    Example: newsletter events --once
    """
    import signal
    import threading

    from .event_queue import poll_queue

    settings = settings_of(ctx)
    url = queue_url or settings.ses.queue_url
    if not url:
        raise click.UsageError("no queue: pass --queue-url or set [tool.newsletter.ses] queue_url")
    from .transports.ses import aws_client

    client = aws_client(settings, "sqs", pool=2 * receivers)  # the receives and, beside them, the deletes

    def report(batch: dict[str, int]) -> None:
        click.echo(_counts(batch))

    stop = threading.Event()
    stopped_by: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second one: at once (the batch being applied is rolled back)
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _store(settings) as store:
            totals = poll_queue(
                store,
                client,
                url,
                once=once,
                transient_limit=settings.ses.transient_bounces,
                topics=settings.ses.topic_arns,
                on_batch=report,
                receivers=receivers,
                stop=stop,
            )
    except KeyboardInterrupt:
        click.echo("Stopped at once: the messages not yet deleted come again (each event counts once)")
        return
    except Exception as err:  # botocore's errors: one line, with the peer's words
        if type(err).__module__.startswith("botocore"):
            raise NewsletterError(f"sqs {url}", str(err), "check the queue URL, region and credentials") from None
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if stopped_by:
        click.echo(f"Stopped by {stopped_by[0]}: {_counts(totals) or 'nothing applied'}")
        return
    click.echo("Done: " + (_counts(totals) or "queue empty"))


def _counts(totals: dict[str, int]) -> str:
    return ", ".join(f"{count} {what}" for what, count in sorted(totals.items()))


def _shown(path: Path) -> str:
    """`path` relative to the current folder when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


DEBUG_ENV = "NEWSLETTER_DEBUG"


def main() -> None:
    """Console-script entry point. A failure no command foresaw is still one line, exit 1 (a bug of ours: set
    NEWSLETTER_DEBUG=1 for its traceback); errors the commands know are reported by `reports_errors`."""
    import os
    import sys

    from .cli_errors import stdout_is_closed, stop_quietly

    try:
        try:
            cli(obj={}, standalone_mode=True)
        finally:
            sys.stdout.flush()  # here, not at exit, where a closed pipe is a warning on stderr
    except BrokenPipeError as err:  # standard output's last flush
        if stdout_is_closed():
            stop_quietly()
        click.echo(f"Error: standard output: {err.strerror or err} (check where the output goes)", err=True)
        sys.exit(1)
    except Exception as err:  # click's own exits and aborts never get here: standalone mode handles them
        if os.environ.get(DEBUG_ENV):
            raise
        text = str(err).splitlines()[0] if str(err) else ""
        click.echo(
            f"Error: newsletter: unexpected {type(err).__name__}{': ' + text if text else ''} "
            f"(a bug: run again with {DEBUG_ENV}=1 and report the traceback)",
            err=True,
        )
        sys.exit(1)


from .cli_doctor import doctor  # noqa: E402 - registered last: cli_doctor takes cli's helpers when it runs

cli.add_command(doctor)

from .cli_init import init, templates  # noqa: E402 - registered last, like doctor

cli.add_command(init)
cli.add_command(templates)

from .cli_report import report  # noqa: E402 - registered last, like doctor

cli.add_command(report)
