"""`newsletter build` against Hugo on the same 1,000 generated issues, timed in turn on this machine.

Both get the same issue files (bench/build.py's: the sample's Korean edition, 2-4 of 60 front-matter tags and
the sample's paper tags), listings of 10 a page and 20-entry feeds; search is off. Hugo gets minimal layouts
that make what ours makes, as near as is fair:

- a page per issue (title, date, tag links, the content) at /issues/<slug>/;
- the home page and a page per tag, paginated by 10 (Hugo's paginator, /page/N/), and the tag index with counts;
- RSS of the newest 20 with their whole content on the home page and every tag (ours: Atom and RSS on the home
  page, Atom on every tag); an Atom feed of the home page;
- sitemap.xml, robots.txt and 404.html.

What differs: Hugo knows only front-matter tags, so each issue's paper tags (`#llama` lines) are added to its
front matter, and a Hugo tag page and feed list whole issues where ours list the papers that carry the tag; ours
also renders each page's hreflang, Open Graph and sign-up form, and makes feed links absolute. Hugo has no cache
between runs: it renders everything again on each build, which is what "edit one issue" and "add one issue"
time for it.

With --baseline DIR (a source tree of this project, such as a `git worktree` of an older commit), that tree's
`newsletter build` is timed too in each pair, on its own copy of the same issues, and ours / its wall is printed:
a change's cost or gain measured beside Hugo in one run. The order of the builders rotates from pair to pair.

Each of --pairs pairs times a cold build of each (fresh folders, no cache, order alternating), then an edit to
one issue and a new issue (the weekly job) in each, each run after a `sync`. Ratios are ours / Hugo's wall per
pair; the median of them is printed. One more pair samples peak memory (all processes, PSS). Without `hugo` on
the PATH (Debian: `apt-get install hugo`), it says so in one line and times ours only.
Run: `python bench/build_vs_hugo.py [--issues 1000] [--pairs 5] [--baseline DIR]`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import machine_load
from build import Run, add_issue, build_command, edit_issue, make_publication, pages_rendered, timed

PAGE_SIZE = 10
FEED_SIZE = 20
PAPER_TAGS = re.compile(r"^#[^#\s].*$", re.M)  # a paper's tag line: "#llama #llama2"

CONFIG = f"""baseURL = "https://papers.example.com/"
languageCode = "ko"
defaultContentLanguage = "ko"
title = "이번 주의 주요 ML 논문"
hasCJKLanguage = true
paginate = {PAGE_SIZE}
rssLimit = {FEED_SIZE}
enableRobotsTXT = true
disableKinds = ["section"]

[taxonomies]
tag = "tags"

[markup.goldmark.renderer]
unsafe = true  # ours keeps the editor's raw HTML too (cleaned by nh3)

[mediaTypes."application/atom+xml"]
suffixes = ["xml"]

[outputFormats.Atom]
mediaType = "application/atom+xml"
baseName = "feed"
isPlainText = true  # XML: text/template, as Hugo's RSS format

[outputs]
home = ["HTML", "RSS", "Atom"]
taxonomy = ["HTML"]
term = ["HTML", "RSS"]

[params]
address = "ML Papers Weekly, 123 Example-ro, Gangnam-gu, Seoul 06236, Republic of Korea"
"""

LAYOUTS = {
    "_default/baseof.html": """<!doctype html>
<html lang="ko">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{ .Title }} · {{ .Site.Title }}</title>
  <link rel="canonical" href="{{ .Permalink }}">
  {{ with .OutputFormats.Get "rss" }}<link rel="alternate" type="application/rss+xml" href="{{ .Permalink }}">{{ end }}
  <meta property="og:title" content="{{ .Title }}">
  <meta property="og:url" content="{{ .Permalink }}">
</head>
<body>
  <header><a href="{{ "/" | relURL }}">{{ .Site.Title }}</a> <a href="{{ "tags/" | relURL }}">태그</a></header>
  <main>{{ block "main" . }}{{ end }}</main>
  <footer><p>{{ .Site.Params.address }}</p></footer>
</body>
</html>
""",
    "_default/single.html": """{{ define "main" }}<article>
<h1>{{ .Title }}</h1>
<p><time datetime="{{ .Date.Format "2006-01-02" }}">{{ .Date.Format "2006년 1월 2일" }}</time></p>
<ul class="tags">{{ range .GetTerms "tags" }}<li><a href="{{ .RelPermalink }}">#{{ .Title }}</a></li>{{ end }}</ul>
{{ .Content }}
</article>{{ end }}
""",
    "_default/list.html": """{{ define "main" }}<h1>{{ .Title }}</h1>
{{ $pages := .Pages }}{{ if .IsHome }}{{ $pages = .Site.RegularPages }}{{ end }}
<ol>{{ range (.Paginate $pages).Pages }}
<li><p><time datetime="{{ .Date.Format "2006-01-02" }}">{{ .Date.Format "2006년 1월 2일" }}</time></p>
<h2><a href="{{ .RelPermalink }}">{{ .Title }}</a></h2>{{ with .Params.summary }}<p>{{ . }}</p>{{ end }}</li>
{{ end }}</ol>
{{ with .Paginator }}{{ if gt .TotalPages 1 }}<nav>
{{ if .HasPrev }}<a rel="prev" href="{{ .Prev.URL }}">← 최근 호</a>{{ end }}
<span>{{ .PageNumber }} / {{ .TotalPages }}</span>
{{ if .HasNext }}<a rel="next" href="{{ .Next.URL }}">지난 호 →</a>{{ end }}
</nav>{{ end }}{{ end }}
{{ end }}
""",
    "_default/terms.html": """{{ define "main" }}<h1>태그</h1>
<ul>{{ range .Data.Terms.ByCount }}
<li><a href="{{ .Page.RelPermalink }}">{{ .Page.Title }}</a> {{ .Count }}</li>{{ end }}</ul>
{{ end }}
""",
    "404.html": """{{ define "main" }}<h1>404</h1>{{ end }}
""",
    "_default/rss.xml": """{{ printf "<?xml version=\\"1.0\\" encoding=\\"utf-8\\"?>" | safeHTML }}
<rss version="2.0"><channel>
<title>{{ .Site.Title }}{{ if not .IsHome }}: {{ .Title }}{{ end }}</title>
<link>{{ .Permalink }}</link>
<description>{{ .Site.Title }}</description>
{{ $pages := .Pages }}{{ if .IsHome }}{{ $pages = .Site.RegularPages }}{{ end }}
{{ range first 20 $pages }}<item>
<title>{{ .Title }}</title><link>{{ .Permalink }}</link><guid>{{ .Permalink }}</guid>
<pubDate>{{ .Date.Format "Mon, 02 Jan 2006 15:04:05 -0700" }}</pubDate>
<description>{{ .Content | html }}</description>
</item>{{ end }}
</channel></rss>
""",
    "index.atom.xml": """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
<title>{{ .Site.Title }}</title><id>{{ .Permalink }}</id><link href="{{ .Permalink }}"/>
<updated>{{ now.Format "2006-01-02T15:04:05-07:00" }}</updated>
{{ range first 20 .Site.RegularPages }}<entry>
<title>{{ .Title }}</title><id>{{ .Permalink }}</id><link href="{{ .Permalink }}"/>
<updated>{{ .Date.Format "2006-01-02T15:04:05-07:00" }}</updated>
<content type="html">{{ .Content | html }}</content>
</entry>{{ end }}
</feed>
""",
}


def hugo_site(folder: Path, issues: list[Path]) -> Path:
    """A Hugo site in `folder` of `issues` (our files), each with its paper tags added to its front matter."""
    for name, text in LAYOUTS.items():
        (folder / "layouts" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "layouts" / name).write_text(text, encoding="utf-8")
    (folder / "config.toml").write_text(CONFIG, encoding="utf-8")
    (folder / "content" / "issues").mkdir(parents=True)
    for path in issues:
        copy_issue(path, folder)
    return folder


def copy_issue(path: Path, folder: Path) -> Path:
    """Our issue file as Hugo content: its front-matter tags and its papers' tags in one list."""
    text = path.read_text(encoding="utf-8")
    head, body = text.split("\n---\n", 1)
    paper_tags = [tag.lstrip("#") for line in PAPER_TAGS.findall(body) for tag in line.split()]
    found = re.search(r"^tags: \[(.*)\]$", head, flags=re.M)
    front_tags = [t.strip() for t in found.group(1).split(",")] if found else []
    tags = list(dict.fromkeys(front_tags + paper_tags))
    head = re.sub(r"^tags: .*$", f"tags: [{', '.join(tags)}]", head, flags=re.M)
    target = folder / "content" / "issues" / path.name
    target.write_text(f"{head}\n---\n{body}", encoding="utf-8")
    return target


def hugo_command(folder: Path) -> list[str]:
    return ["hugo", "--quiet", "--source", str(folder), "--destination", str(folder / "public")]


def hugo_version() -> str | None:
    if shutil.which("hugo") is None:
        return None
    return subprocess.run(["hugo", "version"], capture_output=True, text=True, check=True).stdout.strip()


def files(site: Path) -> int:
    return sum(1 for p in site.rglob("*") if p.is_file())


def summary(name: str, ours: list[Run], hugo: list[Run], baseline: list[Run]) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    line = f"{name:17s} ours {median([r.wall for r in ours]):6.3f} s wall, {median([r.cpu for r in ours]):6.3f} s CPU"
    line += f", {median([pages_rendered(r.output) for r in ours]):4.0f} pages rendered"
    if hugo:
        ratios = [a.wall / b.wall for a, b in zip(ours, hugo, strict=True)]
        line += (
            f" | Hugo {median([r.wall for r in hugo]):6.3f} s wall, {median([r.cpu for r in hugo]):6.3f} s CPU"
            f" | ours/Hugo wall: median {median(ratios):.2f} (pairs: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    if baseline:
        ratios = [a.wall / b.wall for a, b in zip(ours, baseline, strict=True)]
        line += (
            f" | baseline {median([r.wall for r in baseline]):6.3f} s wall,"
            f" {median([r.cpu for r in baseline]):6.3f} s CPU"
            f" | ours/baseline wall: median {median(ratios):.2f} (pairs: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print(line)


def baseline_command(tree: Path, folder: Path) -> list[str]:
    """`newsletter build` of `folder` with the newsletter package of the source tree `tree`."""
    return ["env", f"PYTHONPATH={tree}", *build_command(folder)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, help="a source tree of this project to time too")
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "newsletter" / "__init__.py").is_file():
        sys.exit(f"Error: --baseline {args.baseline}: holds no newsletter/ package (give a checkout of this project)")
    version = hugo_version()
    if version is None:
        print("hugo: not found on the PATH (Debian: apt-get install hugo); timing newsletter build only")
    else:
        print(version)
    print(machine_load())
    scenarios = ("cold build", "edit one issue", "add one issue")
    ours: dict[str, list[Run]] = {name: [] for name in scenarios}
    hugo: dict[str, list[Run]] = {name: [] for name in scenarios}
    baseline: dict[str, list[Run]] = {name: [] for name in scenarios}
    with tempfile.TemporaryDirectory(prefix="newsletter-vs-hugo-") as tmp:
        for pair in range(args.pairs + 1):
            last = pair == args.pairs  # one more pair, sampling memory, which slows it a little
            folder = Path(tmp) / f"ours-{pair}"
            folder.mkdir()
            paths = make_publication(folder, args.issues, page_size=PAGE_SIZE, varied=True)
            site = hugo_site(Path(tmp) / f"hugo-{pair}", paths) if version else None
            base = Path(tmp) / f"baseline-{pair}" if args.baseline else None
            if base:
                base.mkdir()
                base_paths = make_publication(base, args.issues, page_size=PAGE_SIZE, varied=True)
            for name in scenarios:
                if name == "edit one issue":
                    edit_issue(paths[len(paths) // 2])
                    if site:
                        edit_issue(site / "content" / "issues" / paths[len(paths) // 2].name)
                    if base:
                        edit_issue(base_paths[len(paths) // 2])
                elif name == "add one issue":
                    new = add_issue(folder, varied=True)
                    if site:
                        copy_issue(new, site)
                    if base:
                        add_issue(base, varied=True)
                runs = [("ours", folder, build_command(folder))]
                if site:
                    runs.append(("hugo", site, hugo_command(site)))
                if base:
                    runs.append(("baseline", base, baseline_command(args.baseline.resolve(), base)))
                turn = pair % len(runs)  # each builder goes first in turn
                runs = runs[turn:] + runs[:turn]
                for who, cwd, command in runs:
                    result = timed(command, cwd, sample_memory=last)
                    if last:
                        assert result.memory is not None
                        if name == "cold build":
                            print(
                                f"peak memory, cold build, {who}: {result.memory.peak_pss_kb / 1024:.0f} MB PSS "
                                f"({result.memory.peak_rss_kb / 1024:.0f} MB RSS summed over its processes)"
                            )
                    else:
                        {"ours": ours, "hugo": hugo, "baseline": baseline}[who][name].append(result)
        print(f"{args.issues} issues, {args.pairs} pairs; files: ours {files(folder / 'site')}", end="")
        print(f", Hugo {files(site / 'public')}" if site else "")
        for name in scenarios:
            summary(name + ":", ours[name], hugo[name], baseline[name])


if __name__ == "__main__":
    main()
