"""How parse time grows with hostile issue files: each shape at sizes N, 2N and 4N (all under the 1 MB limit).

For each shape it prints the parse time (parse_issue), the email render time (render_email, which `newsletter
check` runs too) and the growth factor from each size to the next: about 2 means linear. With --at-limit it
times, instead, the whole `newsletter check` of a publication holding one file of each shape just under the
size limit.
Run: `python bench/parse_hostile.py [--size 60000] [--runs 3] [--no-email] [--at-limit]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import copy_publication

HEAD = "---\ntitle: x\ndate: 2023-10-02\nsummary: s\n---\n"


def _repeat(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit))


def _paragraphs(unit: str, per_paragraph: int, size: int) -> str:
    return _repeat(unit * per_paragraph + "\n\n", size)


def _sections(size: int, section: Callable[[int], str]) -> str:
    count = size // 250
    parts = [section(k) for k in range(count)]
    padding = "words " * max(0, (size - sum(map(len, parts))) // (6 * count))
    return "".join(f"{part}{padding}\n\n" for part in parts)


SHAPES: dict[str, Callable[[int], str]] = {
    "paragraphs": lambda n: _repeat("Some words in a paragraph.\n\n", n),
    # Sections: n // 250 of them (960 at 4N, under the 1,000 limit), their bodies filling the rest.
    "sections with links": lambda n: _sections(
        n, lambda k: "## Paper\n\nText.\n\n#tag\n\n- [Paper](https://a.example/p)\n\n"
    ),
    "sections, one title": lambda n: _sections(n, lambda k: "## Same\n\nx\n\n"),
    "sections and references": lambda n: (
        _sections(n, lambda k: f"## P{k}\n\nSee [it][r{k}].\n\n")
        + "".join(f"[r{k}]: https://a.example/{k}\n" + ("\n" if k % 100 == 99 else "") for k in range(n // 250))
    ),
    "definitions in a row (at the cap)": lambda n: _repeat("".join(f"[r{k}]: /u{k}\n" for k in range(200)) + "\n", n),
    "one long line": lambda n: _repeat("word ", n),
    "one long heading": lambda n: "## " + _repeat("word ", n),
    "tag line": lambda n: "## P\n\n" + _repeat("#tag ", n),
    "tag line, broken at the end": lambda n: "## P\n\n" + _repeat("#tag ", n) + "#",
    "link row": lambda n: "## P\n\n" + _repeat("[a](https://a.example) · ", n),
    "closing-marker lines": lambda n: _repeat("--- x\n...\n", n),
    "brackets": lambda n: _paragraphs("[a ", 2_000, n),
    "emphasis openers": lambda n: _paragraphs("*a _b ", 2_000, n),
    "strikethrough nested (at the cap)": lambda n: _paragraphs("~~a ", 500, n // 2) + _paragraphs(" a~~", 500, n // 2),
    "images nested (at the depth cap)": lambda n: _repeat("![a " * 90 + "x" + "](u)" * 90 + "\n\n", n),
    "raw HTML, balanced": lambda n: _repeat("<div><span>x</span></div>\n", n),
    "raw HTML, never closed '<a '": lambda n: _repeat("<a ", n),
    "list items": lambda n: _repeat("- item\n", n),
    "quote lines": lambda n: _repeat("> line\n", n),
    "table rows": lambda n: "| a | b |\n| - | - |\n" + _repeat("| x | y |\n", n),
    "hard breaks": lambda n: _repeat("a  \n", n),
    "images with alt text": lambda n: _repeat("![a chart](https://a.example/c.png) ", n),
    "Hangul": lambda n: _repeat("한국어 문장입니다. ", n),
}


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=60_000, help="N, in characters of body [60000]")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-email", action="store_true", help="time parsing only")
    parser.add_argument("--at-limit", action="store_true", help="time `newsletter check` at the size limit")
    args = parser.parse_args()
    if args.at_limit:
        return at_limit()

    from newsletter.config import load_settings
    from newsletter.errors import NewsletterError
    from newsletter.issues import parse_issue
    from newsletter.render.email import render_email
    from newsletter.render.templates import load_templates

    with tempfile.TemporaryDirectory() as scratch:
        folder = copy_publication(Path(scratch), issues=False)
        (folder / "issues").mkdir()
        settings = load_settings(folder)
        templates = load_templates(settings)
        path = folder / "issues" / "2023-10-02-x.md"
        print(f"{'shape':36s} {'size':>9s} {'parse':>9s} {'email':>9s}   growth (parse, email)")
        for name, make in SHAPES.items():
            previous: tuple[float, float] | None = None
            for size in (args.size, 2 * args.size, 4 * args.size):
                data = (HEAD + make(size)).encode("utf-8")
                path.write_bytes(data)
                try:
                    edition = parse_issue(path, settings, data)
                except NewsletterError as err:
                    print(f"{name:36s} {len(data):9,d} refused: {err}")
                    break
                parse = best_of(args.runs, lambda data=data: parse_issue(path, settings, data))
                email = 0.0 if args.no_email else best_of(1, lambda e=edition: render_email(e, settings, templates))
                growth = (
                    f"×{parse / max(previous[0], 1e-6):4.1f}, ×{email / max(previous[1], 1e-6):4.1f}"
                    if previous
                    else ""
                )
                print(f"{name:36s} {len(data):9,d} {parse:8.3f}s {email:8.3f}s   {growth}", flush=True)
                previous = (parse, email)


def at_limit() -> None:
    """`newsletter check` (in this process, as the CLI runs it) of each shape just under MAX_FILE_BYTES."""
    from click.testing import CliRunner

    from newsletter.cli import cli
    from newsletter.issues import MAX_FILE_BYTES

    with tempfile.TemporaryDirectory() as scratch:
        folder = copy_publication(Path(scratch), issues=False)
        (folder / "issues").mkdir()
        path = folder / "issues" / "2023-10-02-x.md"
        print(f"{'shape':36s} {'size':>9s} {'check':>9s}  outcome")
        for name, make in SHAPES.items():
            body = make(MAX_FILE_BYTES - 2_000)
            data = (HEAD + body).encode("utf-8")[: MAX_FILE_BYTES - 500]
            path.write_bytes(data.decode("utf-8", "ignore").encode("utf-8"))
            started = time.perf_counter()
            result = CliRunner().invoke(cli, ["--root", str(folder), "check"], obj={})
            seconds = time.perf_counter() - started
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            outcome = (
                "ok"
                if result.exit_code == 0
                else f"exit {result.exit_code}: "
                + (next((line for line in result.stderr.splitlines() if line.startswith("error: ")), last[0])[:90])
            )
            print(f"{name:36s} {path.stat().st_size:9,d} {seconds:8.2f}s  {outcome}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
