"""The output plan: a path planned twice is refused naming both outputs, and an output is reused from the site on
disk only when its key (salted with the settings' and templates' digests) and its file are both there."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import BuildError
from newsletter.render.output_plan import OutputPlan, output_key


def test_a_path_planned_twice_is_refused_naming_both() -> None:
    plan = OutputPlan(("settings", "templates"), None, {}, {})
    plan.data("tags/a/index.html", "first", "tag 'a'")
    with pytest.raises(BuildError) as raised:
        plan.data("tags/a/index.html", "second", "tag 'A'")
    assert str(raised.value) == (
        "tags/a/index.html: would be written twice: by tag 'a' and by tag 'A' (rename one of them)"
    )


def test_an_output_is_reused_only_with_its_key_and_its_file(tmp_path: Path) -> None:
    salt = ("settings", "templates")
    (tmp_path / "kept.html").write_text("on disk", encoding="utf-8")
    known = {"kept.html": output_key(*salt, "k1"), "gone.html": output_key(*salt, "k2")}
    plan = OutputPlan(salt, tmp_path, known, {})
    plan.output("kept.html", "k1", lambda: "new", "kept")  # same key, file there: reused
    plan.output("gone.html", "k2", lambda: "new", "gone")  # same key, no file: rendered
    plan.output("changed.html", "k3", lambda: "new", "changed")  # not known: rendered
    assert (plan.reused, plan.rendered) == (1, 2)
    assert [job.path for job in plan.jobs] == ["gone.html", "changed.html"]
    assert plan.moved == ["gone.html", "changed.html"]
    assert set(plan.new_keys) == {"kept.html", "gone.html", "changed.html"}


def test_a_page_rendered_while_parsing_is_taken_when_its_key_holds() -> None:
    salt = ("settings", "templates")
    plan = OutputPlan(salt, None, {}, {"issues/a/index.html": output_key(*salt, "k"), "issues/b/index.html": "old"})
    plan.output("issues/a/index.html", "k", lambda: "new", "a")
    plan.output("issues/b/index.html", "k", lambda: "new", "b")
    assert [job.path for job in plan.jobs] == ["issues/b/index.html"]
    assert plan.moved == ["issues/a/index.html", "issues/b/index.html"]
