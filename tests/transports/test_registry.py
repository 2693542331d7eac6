"""Every transport name has one list (config.TRANSPORTS): the settings, `--transport` and open_transport agree."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from newsletter.cli import cli
from newsletter.config import TRANSPORTS, load_settings
from newsletter.errors import ConfigError
from newsletter.transports import open_transport


def test_send_offers_exactly_the_configured_transports() -> None:
    send = cli.commands["send"]
    option = next(p for p in send.params if p.name == "transport_name")
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == TRANSPORTS


@pytest.mark.parametrize("name", TRANSPORTS)
def test_every_transport_name_opens(name: str, publication: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # boto3 makes clients without calling anyone
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    transport = open_transport(name, load_settings(publication), slug="registry")
    try:
        assert transport.name == name
    finally:
        transport.close()


def test_an_unknown_name_lists_the_known_ones(publication: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        open_transport("carrier-pigeon", load_settings(publication), slug="registry")
    assert str(caught.value) == "--transport: 'carrier-pigeon' is not a transport (use file, smtp, ses)"
