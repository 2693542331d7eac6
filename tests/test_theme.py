"""The packaged theme and a publication's overrides: templates/ replaces the theme file by file, strings.toml key
by key per language, static/ file by file; errors name the real file; languages without wording are one line;
`newsletter templates list|copy`."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest

import newsletter.render.templates as theme_module
from newsletter.config import load_settings
from newsletter.render.site import build_site
from newsletter.render.templates import THEME_DIR, Layer, load_templates, theme_files

SLUG = "2023-09-25-top-ml-papers"


def _settings_with(publication: Path, old: str, new: str) -> None:
    path = publication / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _override(publication: Path, name: str, text: str) -> Path:
    path = publication / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_theme_ships_every_template_inside_the_package() -> None:
    names = set(theme_files())
    for name in ("email.mjml.j2", "email.txt.j2", "page.html.j2", "index.html.j2", "web/unsubscribe.html.j2"):
        assert name in names
    assert {"strings.toml", "email.css", "issue.md.j2", "static/style.css", "static/og-image.png"} <= names
    assert THEME_DIR.parent.name == "newsletter"


def test_a_publication_without_templates_uses_the_theme(publication: Path, run) -> None:
    shutil.rmtree(publication / "templates")
    assert run("check").exit_code == 0
    built = run("build")
    assert built.exit_code == 0, built.stderr
    page = (publication / "site" / "issues" / SLUG / "index.html").read_text(encoding="utf-8")
    assert "반전의 저주" in page
    assert (publication / "site" / "static" / "style.css").read_bytes() == (THEME_DIR / "static/style.css").read_bytes()
    assert run("preview", SLUG).exit_code == 0


def test_the_sample_publication_overrides_only_its_wording() -> None:
    repo = Path(__file__).resolve().parent.parent
    assert sorted(p.name for p in (repo / "templates").iterdir()) == ["README.md", "strings.toml"]


def test_an_override_replaces_one_file_and_can_extend_the_themes(publication: Path, run) -> None:
    _override(
        publication,
        "page.html.j2",
        '{% extends "theme/page.html.j2" %}\n{% block main %}<p class="mine">mine</p>{{ super() }}{% endblock %}\n',
    )
    _override(
        publication,
        "index.html.j2",
        '{% extends "base.html.j2" %}\n{% block main %}<p class="my-index">index</p>'
        '{% include "pagination.html.j2" %}{% endblock %}\n',
    )
    result = run("build")
    assert result.exit_code == 0, result.stderr
    page = (publication / "site" / "issues" / SLUG / "index.html").read_text(encoding="utf-8")
    assert '<p class="mine">mine</p>' in page and "반전의 저주" in page  # the theme's block is still there
    index = (publication / "site" / "index.html").read_text(encoding="utf-8")
    assert '<p class="my-index">index</p>' in index and "<title>" in index  # the theme's base around it
    tag_page = next((publication / "site" / "tags").glob("*/index.html")).read_text(encoding="utf-8")
    assert "mine" not in tag_page  # the other pages still come from the theme


def test_wording_overrides_merge_key_by_key_per_language(publication: Path, run) -> None:
    _override(publication, "strings.toml", '[en]\nview_in_browser = "Open it online"\n')
    assert run("preview", SLUG).exit_code == 0
    english = (publication / "preview" / SLUG / "en" / "email.html").read_text(encoding="utf-8")
    korean = (publication / "preview" / SLUG / "ko" / "email.html").read_text(encoding="utf-8")
    assert "Open it online" in english and "View in your browser" not in english
    assert ">Unsubscribe<" in english  # the keys not overridden stay the theme's (this file replaced the sample's)
    assert "웹에서 보기" in korean


def test_static_files_merge_file_by_file(publication: Path, run) -> None:
    _override(publication, "static/style.css", "body { color: rebeccapurple; }\n")
    _override(publication, "static/extra/notes.txt", "mine\n")
    assert run("build").exit_code == 0
    static = publication / "site" / "static"
    assert (static / "style.css").read_text(encoding="utf-8") == "body { color: rebeccapurple; }\n"
    assert (static / "extra" / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    assert (static / "og-image.png").read_bytes() == (THEME_DIR / "static" / "og-image.png").read_bytes()


def test_email_css_is_overridable(publication: Path, run) -> None:
    _override(publication, "email.css", ".card { border-left: 7px solid #abcdef; }\n")
    assert run("preview", SLUG).exit_code == 0
    html = (publication / "preview" / SLUG / "ko" / "email.html").read_text(encoding="utf-8")
    assert "#abcdef" in html


def test_a_theme_change_reaches_the_publication_and_its_build_cache(
    publication: Path, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgraded theme (here a copy of it, changed) renders the pages again: the digest covers the theme."""
    theme = tmp_path / "theme"
    shutil.copytree(THEME_DIR, theme)
    monkeypatch.setattr(theme_module, "THEME_LAYER", Layer(theme, "theme"))
    settings = load_settings(publication)
    first = build_site(settings)
    assert build_site(settings).pages_rendered == 0
    entry = theme / "entry.html.j2"
    entry.write_text(entry.read_text(encoding="utf-8") + '<p class="theme-fix">fixed</p>\n', encoding="utf-8")
    again = build_site(settings)
    assert again.pages_rendered > 0
    assert "theme-fix" in (first.out / "issues" / SLUG / "index.html").read_text(encoding="utf-8")
    before = load_templates(settings).digest
    _override(publication, "entry.html.j2", entry.read_text(encoding="utf-8"))
    assert load_templates(settings).digest != before  # an override with the same bytes is still a change


def test_errors_name_the_override_or_the_theme_file(publication: Path, run) -> None:
    _override(publication, "page.html.j2", '{% extends "theme/page.html.j2" %}\n{% block main %}{{ oops( }}\n')
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: templates/page.html.j2:2: "), result.stderr
    (publication / "templates" / "page.html.j2").unlink()
    _override(publication, "strings.toml", '[ko]\ndate_format = "{nope}"\n')  # the theme's page formats the date
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: theme/page.html.j2:4: KeyError: 'nope' ("), result.stderr
    assert len(result.stderr.splitlines()) == 1
    checked = run("check")
    assert checked.exit_code == 1
    assert "Traceback" not in checked.stderr


def test_check_names_a_broken_override_by_its_file(publication: Path, run) -> None:
    _override(publication, "web/error.html.j2", "{% block main %}\n{% endfor %}\n")
    result = run("check")
    assert result.exit_code == 1
    assert any(line.startswith("error: templates/web/error.html.j2:2: ") for line in result.stderr.splitlines())


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        (
            'language = "ko"',
            'language = "kr"',
            "Error: pyproject.toml [tool.newsletter] language: 'kr' has no wording in the theme (did you mean 'ko'? "
            "or add a [kr] table to templates/strings.toml)",
        ),
        (
            'languages = ["en"]',
            'languages = ["en", "de"]',
            "Error: pyproject.toml [tool.newsletter] languages: 'de' has no wording in the theme (add a [de] table "
            "to templates/strings.toml; the theme has en, ko)",
        ),
    ],
)
def test_a_language_without_wording_is_one_line_naming_the_key(
    publication: Path, run, old: str, new: str, line: str
) -> None:
    _settings_with(publication, old, new)
    for command in (("check",), ("build",), ("preview", SLUG)):
        result = run(*command)
        assert result.exit_code == 1
        assert result.stderr == line + "\n"


def test_a_new_language_needs_only_its_table_and_falls_back_to_english(publication: Path, run) -> None:
    _settings_with(publication, 'languages = ["en"]', 'languages = ["en", "de"]')
    _override(publication, "strings.toml", '[de]\nview_in_browser = "Im Browser ansehen"\nlanguage_name = "Deutsch"\n')
    result = run("check")
    assert result.exit_code == 0, result.stderr
    settings = load_settings(publication)
    wording = load_templates(settings).strings_for("de", settings.language)
    assert wording["view_in_browser"] == "Im Browser ansehen"
    assert wording["unsubscribe"] == "Unsubscribe"  # the theme's English


def test_a_regional_language_takes_its_primary_languages_wording(publication: Path, run) -> None:
    _settings_with(publication, 'languages = ["en"]', 'languages = ["en-GB"]')
    _settings_with(publication, "[tool.newsletter.en]", "[tool.newsletter.en-GB]")
    settings = load_settings(publication)
    assert load_templates(settings).strings_for("en-GB", "ko")["view_in_browser"] == "View in your browser"


def test_templates_as_a_file_is_one_line(publication: Path, run) -> None:
    shutil.rmtree(publication / "templates")
    (publication / "templates").write_text("not a folder", encoding="utf-8")
    result = run("check")
    assert result.exit_code == 1
    assert result.stderr == "Error: templates/: is not a folder (make it a folder of the files you override)\n"


def test_strings_toml_must_hold_tables(publication: Path, run) -> None:
    _override(publication, "strings.toml", 'view_in_browser = "x"\n')
    result = run("check")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: templates/strings.toml: 'view_in_browser' is not a table of wording "
        "(write the keys of a language under [view_in_browser])\n"
    )


# ---------------------------------------------------------------- newsletter templates


def test_templates_list_says_what_is_overridden(publication: Path, run) -> None:
    _override(publication, "page.html.j2", "{{ article }}")
    _override(publication, "strings.toml", "[en]\n")
    _override(publication, "partials/ad.html.j2", "")
    result = run("templates", "list")
    assert result.exit_code == 0
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in result.stdout.splitlines()}
    assert set(theme_files()) <= set(rows)
    assert rows["email.mjml.j2"] == "theme"
    assert rows["page.html.j2"] == "templates/page.html.j2 (overrides the theme's)"
    assert rows["strings.toml"] == "theme, with templates/strings.toml merged over it"
    assert rows["partials/ad.html.j2"] == "templates/partials/ad.html.j2 (yours; not in the theme)"
    assert "README.md" not in rows


def test_templates_copy_copies_the_themes_file_and_never_overwrites_unasked(publication: Path, run) -> None:
    result = run("templates", "copy", "email.mjml.j2", "static/style.css")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Copied theme/email.mjml.j2 to templates/email.mjml.j2",
        "Copied theme/static/style.css to templates/static/style.css",
    ]
    copied = publication / "templates" / "email.mjml.j2"
    assert copied.read_bytes() == (THEME_DIR / "email.mjml.j2").read_bytes()
    copied.write_text("mine", encoding="utf-8")
    refused = run("templates", "copy", "page.html.j2", "email.mjml.j2")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: templates/email.mjml.j2: already exists (pass --force to replace it with the theme's)\n"
    )
    assert copied.read_text(encoding="utf-8") == "mine"
    assert not (publication / "templates" / "page.html.j2").exists()  # nothing copied when one is refused
    forced = run("templates", "copy", "email.mjml.j2", "--force")
    assert forced.exit_code == 0
    assert copied.read_bytes() == (THEME_DIR / "email.mjml.j2").read_bytes()
    assert run("check").exit_code == 0


def test_templates_copy_of_an_unknown_name_suggests_the_nearest(publication: Path, run) -> None:
    result = run("templates", "copy", "style.css")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: templates copy: 'style.css' is not a file of the theme (did you mean 'static/style.css', "
        "'email.css'? see newsletter templates list)\n"
    )
    assert run("templates", "copy").exit_code == 1


def test_templates_copy_a_folder_or_all(publication: Path, run) -> None:
    assert run("templates", "copy", "web").exit_code == 0
    web = sorted(p.name for p in (publication / "templates" / "web").iterdir())
    assert web == sorted(Path(n).name for n in theme_files() if n.startswith("web/"))
    result = run("templates", "copy", "--all", "--force")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == len(theme_files())
    built = run("build")
    assert built.exit_code == 0, built.stderr


def test_templates_commands_work_while_the_settings_are_broken(publication: Path, run) -> None:
    _settings_with(publication, 'language = "ko"', 'language = "kr"')
    assert run("templates", "list").exit_code == 0
    assert run("templates", "copy", "email.css").exit_code == 0


def _outside(tmp_path: Path) -> Path:
    """A secret of the machine, outside the publication (as /etc/passwd or a runner's token would be)."""
    secret = tmp_path / "runner" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the runner's secret\n", encoding="utf-8")
    return secret


@pytest.mark.parametrize("name", ["static/leak.txt", "email.css", "strings.toml", "page.html.j2", "entry.html.j2"])
@pytest.mark.parametrize("command", ["build", "check"])
def test_a_link_out_of_the_publication_is_refused_unread(
    publication: Path, run, tmp_path: Path, name: str, command: str
) -> None:
    secret = _outside(tmp_path)
    link = publication / "templates" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)  # the sample overrides strings.toml: the link takes its place
    link.symlink_to(secret)
    result = run(command)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: templates/{name}: leads through a symbolic link to {secret}, outside the publication "
        "(copy the file into the publication, or remove the link)"
    )
    site = publication / "site"
    assert not site.exists() or "the runner's secret" not in "".join(
        p.read_text(encoding="utf-8", errors="replace") for p in site.rglob("*") if p.is_file()
    )


def test_a_linked_folder_out_of_the_publication_is_refused(publication: Path, run, tmp_path: Path) -> None:
    secret = _outside(tmp_path)
    (publication / "templates").mkdir(exist_ok=True)
    (publication / "templates" / "static").symlink_to(secret.parent, target_is_directory=True)
    result = run("build")
    assert result.exit_code == 1
    assert f"Error: templates/static/secret.txt: leads through a symbolic link to {secret}," in result.stderr
    assert not (publication / "site" / "static" / "secret.txt").exists()


def test_a_link_inside_the_publication_is_followed(publication: Path, run) -> None:
    shared = publication / "assets" / "logo.txt"
    shared.parent.mkdir()
    shared.write_text("our logo\n", encoding="utf-8")
    (publication / "templates" / "static").mkdir(parents=True, exist_ok=True)
    (publication / "templates" / "static" / "logo.txt").symlink_to("../../assets/logo.txt")
    assert run("check").exit_code == 0
    assert run("build").exit_code == 0
    assert (publication / "site" / "static" / "logo.txt").read_text(encoding="utf-8") == "our logo\n"


def test_the_sample_keeps_its_wording_over_a_theme_that_speaks_for_any_publication(publication: Path, run) -> None:
    """The theme's English has no Korean in it; the sample's strings.toml puts its bilingual wording back."""
    theme = tomllib.loads((THEME_DIR / "strings.toml").read_text(encoding="utf-8"))
    hangul = re.compile(r"[\uac00-\ud7a3]")
    assert [key for key, value in theme["en"].items() if isinstance(value, str) and hangul.search(value)] == []
    assert "paper" not in theme["en"]["papers_in_issue"] and "논문" not in theme["ko"]["papers_in_issue"]
    settings = load_settings(publication)
    wording = load_templates(settings).strings_for("en", settings.language)
    assert wording["unsubscribe"] == "Unsubscribe (수신거부)" and wording["ad_subject_prefix"] == "(광고)"
    assert wording["papers_in_issue"] == "{count} papers"
