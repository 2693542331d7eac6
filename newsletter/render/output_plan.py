"""The output plan of one site build: each output's path and key (a digest of all it depends on), and whether
a parse worker rendered it already, the site on disk has it, or a job must render it. No path is planned twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import BuildError
from .parallel import RenderJob


def output_key(*parts: object) -> str:
    """A short digest of everything an output depends on."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


class OutputPlan:
    """Every output of one build: reused from the site on disk, taken from staging, or a job to render it.

    `salt` (the settings' and the templates' digests) goes into every key; `known` holds the key of each output
    of the site on disk (`previous`); `prerendered` the key of each page parse workers rendered into staging."""

    def __init__(
        self, salt: tuple[str, ...], previous: Path | None, known: dict[str, str], prerendered: dict[str, str]
    ) -> None:
        self.salt = salt
        self.previous = previous
        self.previous_prefix = f"{previous}/" if previous else ""
        self.known = known
        self.prerendered = prerendered
        self.sources: dict[str, str] = {}  # path → what planned it, for the two-writes error
        self.new_keys: dict[str, str] = {}  # path → key of every output of this build
        self.moved: list[str] = []  # paths rendered into staging that this build uses
        self.jobs: list[RenderJob] = []
        self.rendered = 0
        self.reused = 0

    def output(self, path: str, key: str, make: Callable[[], str | bytes], source: str) -> None:
        """Plan `path`: take it from staging when a parse worker rendered it with the same key (all it depends
        on), keep it when the site on disk has it with that key, else queue a job to render it."""
        if path in self.sources:
            raise BuildError(
                path, f"would be written twice: by {self.sources[path]} and by {source}", "rename one of them"
            )
        self.sources[path] = source
        key = output_key(*self.salt, key)
        self.new_keys[path] = key
        if self.prerendered.get(path) == key:  # rendered into staging while parsing, from the same inputs
            self.moved.append(path)
            self.rendered += 1
            return
        if self.previous is not None and self.known.get(path) == key and os.path.isfile(self.previous_prefix + path):
            self.reused += 1
            return
        self.jobs.append(RenderJob(path, make))
        self.moved.append(path)
        self.rendered += 1

    def data(self, path: str, data: str | bytes, source: str) -> None:
        """An output whose content is known now (its key is its hash)."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self.output(path, hashlib.blake2b(raw, digest_size=16).hexdigest(), lambda: raw, source)
