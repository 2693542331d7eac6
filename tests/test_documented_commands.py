"""Every `newsletter …` command that a hint, a docstring or the documentation names exists and takes the options
shown: example command lines are parsed by the real CLI; usage lines and prose mentions must name real commands
and real options."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from newsletter.cli import cli

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    REPO / "README.md",
    REPO / "ADDING_A_TRANSPORT.md",
    REPO / "subscribers" / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
]
SOURCES = sorted((REPO / "newsletter").rglob("*.py")) + sorted((REPO / "newsletter").rglob("*.j2"))

EXAMPLE = re.compile(r"^\$ (newsletter .+)$", re.MULTILINE)  # `$ newsletter …` in a code block
MENTION = re.compile(r"`(newsletter [^`\n]+)`")  # `newsletter …` in prose or a heading
QUOTED = re.compile(r"'(newsletter [a-z][^'\n]*)'")  # 'newsletter …' in a hint or message


@dataclass(frozen=True)
class Named:
    """One command line found somewhere: where, the text, and whether it is a whole runnable example."""

    where: str
    text: str
    runnable: bool


def named_commands() -> list[Named]:
    found = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(REPO).as_posix()
        for match in EXAMPLE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Named(f"{where}:{line}", match[1], runnable=True))
        for match in MENTION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Named(f"{where}:{line}", match[1], runnable=False))
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(REPO).as_posix()
        for match in QUOTED.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            # A hint is a whole command for the user to run; its {placeholders} are filled at run time.
            found.append(Named(f"{where}:{line}", re.sub(r"\{[^}]*\}", "2023-09-25-top-ml-papers", match[1]), True))
        for match in re.finditer(r"Example: (newsletter [^\n]+)", text):  # the --help examples
            line = text.count("\n", 0, match.start()) + 1
            example = match[1].split('"""')[0].split(" (")[0].rstrip(". ")
            found.append(Named(f"{where}:{line}", example, runnable=True))
    return found


def resolve(words: list[str]) -> tuple[click.Command, list[str], str]:
    """(the command the words name, the words left for it, its full name); fails the test if there is none."""
    command: click.Command = cli
    name = "newsletter"
    rest = words[1:]
    while rest[:1] == ["--root"]:
        rest = rest[2:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"'{name} {rest[0]}' is not a command"
        command, name, rest = sub, f"{name} {rest[0]}", rest[1:]
    return command, rest, name


def option_names(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help", "-h"}


NAMED = named_commands()


def test_the_collector_finds_hints_and_examples() -> None:
    texts = {named.text for named in NAMED}
    assert "newsletter subscribers import subscribers/example.csv" in texts
    assert "newsletter status 2023-09-25-top-ml-papers" in texts  # from the send's hint, filled in
    assert len(NAMED) > 40


@pytest.mark.parametrize("named", NAMED, ids=lambda n: f"{n.where}: {n.text}")
def test_named_command_exists_and_takes_its_options(named: Named) -> None:
    text = named.text.replace("…", "")
    if named.runnable:
        words = shlex.split(text)
        command, rest, name = resolve(words)
        if "--help" in rest or "-h" in rest:
            return
        try:
            command.make_context(name, rest, parent=None)
        except click.UsageError as err:
            pytest.fail(f"{named.where}: '{named.text}' is refused by the CLI: {err.format_message()}")
        return
    # A usage line or a mention: `[--out DIR]`, `add|import|…`, `file|smtp|ses`; its first word of each choice.
    words = [word.split("|")[0] for word in text.replace("[", " ").replace("]", " ").split()]
    command, rest, name = resolve(words)
    unknown = sorted({word.split("=")[0] for word in rest if word.startswith("-")} - option_names(command))
    assert not unknown, f"{named.where}: '{name}' has no option {', '.join(unknown)}"
    if isinstance(command, click.Group):
        choices = text.split()[len(name.split())].split("|") if len(text.split()) > len(name.split()) else []
        missing = [choice for choice in choices if choice not in command.commands]
        assert not missing, f"{named.where}: '{name}' has no command {', '.join(missing)}"


def test_a_wrong_option_is_caught() -> None:
    """The check itself: an option the command lacks is refused."""
    command, rest, name = resolve(shlex.split("newsletter build --nope"))
    with pytest.raises(click.UsageError):
        command.make_context(name, rest)
