"""A built site's files for comparing two builds byte for byte.

Pagefind 1.5 writes its filter lists in hash-map order, different in each run over the same pages, and names
them by hash in its meta file, which pagefind-entry.json names by hash: those files stand for their language
only. Every other file of the search index (its word index, each paper's fragment) is compared whole.
"""

from __future__ import annotations

from pathlib import Path


def unordered(path: Path) -> bool:
    """Whether `path` is one of the search index's files that differ between two runs over the same pages."""
    return "pagefind" in path.parts and (
        path.parent.name == "filter" or path.name.endswith(".pf_meta") or path.name == "pagefind-entry.json"
    )


def site_files(site: Path) -> dict[str, bytes]:
    """Each file of `site` by its path (posix): its bytes, or for those that differ by run, its language."""
    files = {}
    for path in sorted(site.rglob("*")):
        if not path.is_file():
            continue
        if unordered(path):
            kind = path.parent.name if path.parent.name == "filter" else path.suffix or path.name
            files[f"pagefind/{kind}:{path.name.removeprefix('pagefind.').split('_')[0]}"] = b""
        else:
            files[path.relative_to(site).as_posix()] = path.read_bytes()
    return files
