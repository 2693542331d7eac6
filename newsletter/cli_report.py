"""`newsletter report ISSUE`: options → build_report → an aligned table, JSON, or a private HTML page.

cli.py registers it at its end, so this module imports cli.py's helpers only when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("issue")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (the shape is in the README).")
@click.option("--html", "as_html", is_flag=True, help="Also write report.html beside the preview (preview/<slug>/).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --html: the private folder to write report.html into (never inside site/).",
)
@click.pass_context
def report(ctx: click.Context, issue: str, as_json: bool, as_html: bool, out: Path | None) -> None:
    """Show what ISSUE did, per edition: sent, delivered, bounced (hard, soft), complained, rejected,
    unsubscribed after it, and opens and clicks per paper of the recipients who consented to tracking.

    Figures SES has sent no event for yet say "no events yet" (null in JSON), not 0.
    Example: newsletter report 2023-09-25-top-ml-papers --html
    """
    from .cli import reports_errors

    reports_errors(_report)(ctx, issue, as_json, as_html, out)


def _report(ctx: click.Context, issue: str, as_json: bool, as_html: bool, out: Path | None) -> None:
    from .cli import _shown, _store, settings_of
    from .errors import StoreError
    from .issues import find_issue
    from .report import build_report
    from .report_table import format_report

    if out is not None and not as_html:
        raise click.UsageError("--out is for --html: add --html, or leave --out out")
    settings = settings_of(ctx)
    found = find_issue(settings, issue)
    folder = out if out is not None else settings.root / "preview" / found.slug
    if as_html:
        from .report_html import check_report_folder

        check_report_folder(folder, settings)
    prefix = "sqlite:///"
    if settings.database_url.startswith(prefix) and settings.database_url != "sqlite:///:memory:":
        database = Path(settings.database_url[len(prefix) :])
        if not database.exists():  # a report reads: it never makes an empty store
            raise StoreError(
                str(database), "no subscriber store here yet", f"send the issue first: newsletter send {found.slug}"
            )
    with _store(settings) as store:
        made = build_report(store, found)
    if as_json:
        click.echo(json.dumps(made.as_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(format_report(made, settings.timezone))
    if as_html:
        from .report_html import write_report_page

        path = write_report_page(made, folder, settings.timezone)
        click.echo(f"Wrote {_shown(path)}", err=as_json)  # JSON on stdout stays parseable
