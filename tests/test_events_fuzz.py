"""Hostile SNS and SES payloads, fixed seed: mutations of valid envelopes and records (type confusion, sizes,
broken bytes) through the SNS handler, a few through real waitress, and through the SQS path's parser. No
exception escapes; every answer is 200 or a 4xx with a line in the log; the store stays consistent."""

from __future__ import annotations

import copy
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
import requests

from newsletter.config import load_settings
from newsletter.events import NotificationError, apply_events, parse_notification, sns_handler
from newsletter.store import add_subscriber
from newsletter.web import create_app
from tests import conftest
from tests.sns_peer import OTHER_TOPIC, TOPIC, SnsPeer
from tests.test_sns import BOUNCE, configure_topics

SEED = 20261202
CASES = 300
COMPLAINT = {
    "notificationType": "Complaint",
    "mail": {"messageId": "m-2"},
    "complaint": {
        "feedbackId": "fb-c",
        "complaintFeedbackType": "abuse",
        "complaintSubType": None,
        "timestamp": "2023-09-25T01:00:00Z",
        "complainedRecipients": [{"emailAddress": "angry@example.com"}],
    },
}
TRANSIENT = {
    "eventType": "Bounce",
    "bounce": {
        "bounceType": "Transient",
        "bounceSubType": "MailboxFull",
        "feedbackId": "fb-t",
        "bouncedRecipients": [{"emailAddress": "full@example.com"}, {"emailAddress": "gone@example.com"}],
    },
}
HOSTILE: list[Any] = [
    None,
    True,
    0,
    -1,
    10**40,
    1.5,
    float("inf"),
    "",
    " ",
    "x" * 5000,
    "a\x00b",
    "gone\ud800@example.com",
    "Permanent",
    "Bounce",
    "arn:aws:sns:us-east-1:123456789012:ses-events",
    [],
    [1, "a"],
    [{"emailAddress": 7}],
    {},
    {"emailAddress": "gone@example.com"},
    {"a": {"b": {"c": []}}},
    "1999-99-99T99:99:99Z",
    "9999-12-31T23:59:59-23:59",
]
ENVELOPE_KEYS = ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "Subject", "SubscribeURL", "Token"]
ALLOWED = {200, 400, 403, 413}


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (dict keys and list indexes) into a decoded JSON value."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate_record(rng: random.Random, record: dict) -> Any:
    """The record with one to three of its values replaced by a hostile one, or deleted."""
    record = copy.deepcopy(record)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(record)[1:] or [()])
        if not path:
            return rng.choice(HOSTILE)
        parent = record
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
        if not isinstance(record, dict):
            break
    return record


def hostile_bodies(peer: SnsPeer, count: int, seed: int = SEED) -> list[bytes]:
    """`count` bodies: signed envelopes around mutated records (so the record parser is reached), mutated
    envelopes (signed and not), and byte-level damage."""
    rng = random.Random(seed)
    records = [BOUNCE, COMPLAINT, TRANSIENT]
    bodies: list[bytes] = [
        b"",
        b"null",
        b"[]",
        b'"Notification"',
        b"1e999",
        b"[" * 100_000,
        b'{"Type": ' * 50_000,
        b"\xff\xfe\x00{",
        json.dumps({"Type": ["Notification"]}).encode(),
        json.dumps({"Type": {"a": 1}, "TopicArn": TOPIC}).encode(),
        json.dumps(
            {**peer.notification(BOUNCE), "SigningCertURL": ["https://sns.us-east-1.amazonaws.com/x.pem"]}
        ).encode(),
        json.dumps(peer.notification(json.dumps([BOUNCE]))).encode(),  # Message JSON that is a list
        json.dumps(peer.notification("not json")).encode(),
        json.dumps(peer.notification("[" * 50_000)).encode(),
        json.dumps(peer.notification({**BOUNCE, "x": "y" * 300_000})).encode(),  # over SNS's 256 KB
    ]
    while len(bodies) < count:
        roll = rng.random()
        if roll < 0.55:  # a signed notification whose SES record is hostile
            message = peer.notification(_mutate_record(rng, rng.choice(records)), version=rng.choice("12"))
        elif roll < 0.8:  # an envelope with a hostile field, signed when its Type allows
            base = peer.notification(rng.choice(records)) if rng.random() < 0.6 else peer.confirmation()
            unsigned = {k: v for k, v in base.items() if k not in {"Signature", "SignatureVersion", "SigningCertURL"}}
            key = rng.choice(ENVELOPE_KEYS)
            if rng.random() < 0.2:
                unsigned.pop(key, None)
            else:
                unsigned[key] = copy.deepcopy(rng.choice(HOSTILE))
            if rng.random() < 0.6:
                message = peer.sign(unsigned, rng.choice("12"))
            else:  # changed after signing
                message = {**unsigned, **{k: base[k] for k in ("Signature", "SignatureVersion", "SigningCertURL")}}
            if rng.random() < 0.2:
                message["SigningCertURL"] = copy.deepcopy(rng.choice(HOSTILE))
        else:  # damaged bytes of a valid message
            data = bytearray(json.dumps(peer.notification(rng.choice(records))).encode())
            for _ in range(rng.randint(1, 8)):
                index = rng.randrange(len(data))
                if rng.random() < 0.5:
                    data[index] = rng.randrange(256)
                else:
                    del data[index:]
                    break
            bodies.append(bytes(data))
            continue
        bodies.append(json.dumps(message).encode())
    return bodies


@pytest.fixture
def fuzz_site(publication: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    """(settings, store, peer) with TOPIC configured, the store on SQLite and on PostgreSQL."""
    from newsletter.store import open_store

    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-test-secret-that-is-long-enough")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    configure_topics(publication, json.dumps(TOPIC))
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        for email in ("gone@example.com", "angry@example.com", "full@example.com"):
            add_subscriber(store, email)
        yield settings, store, SnsPeer()


def test_hostile_sns_bodies_get_a_4xx_and_a_log_line_never_an_exception(
    fuzz_site, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import newsletter.events

    monkeypatch.setattr(newsletter.events, "REFUSAL_LOG_SECONDS", 0.0)  # a line for every refusal, to check each
    settings, store, peer = fuzz_site
    handle = sns_handler(settings, store=store, fetch=peer.fetch)
    caplog.set_level(logging.WARNING, logger="newsletter.events")
    statuses: dict[int, int] = {}
    for number, body in enumerate(hostile_bodies(peer, CASES)):
        caplog.clear()
        status, text = handle(body, {})  # an exception here fails the test, with the case's number below
        assert status in ALLOWED, (number, status, text, body[:300])
        if status != 200:
            assert [r for r in caplog.records if r.getMessage().startswith("SNS message refused")], (number, body[:300])
        statuses[status] = statuses.get(status, 0) + 1
    # the mutations reach every stage: accepted, unreadable records, refused envelopes, too large
    assert all(statuses.get(code, 0) > 0 for code in ALLOWED), statuses
    assert all(url.startswith("https://sns.us-east-1.amazonaws.com/") for url in peer.fetched)


def test_hostile_sns_bodies_through_waitress_are_never_a_500(fuzz_site) -> None:
    settings, store, peer = fuzz_site
    handler = sns_handler(settings, store=store, fetch=peer.fetch)
    server = conftest.WebServer(create_app(settings, store, events_handler=handler))
    try:
        for body in hostile_bodies(peer, 40, seed=SEED + 1):
            answer = requests.post(f"{server.url}/ses/notifications", data=body, timeout=10)
            assert answer.status_code in ALLOWED, (answer.status_code, body[:300])
    finally:
        server.close()


def test_hostile_queue_bodies_are_refused_whole_or_applied_never_raise(fuzz_site) -> None:
    """The SQS path: parse_notification raises NotificationError or gives events the store takes."""
    settings, store, peer = fuzz_site
    rng = random.Random(SEED + 2)
    bodies = [b for b in hostile_bodies(peer, CASES, seed=SEED + 3) if len(b) < 256 * 1024]
    bodies += [json.dumps(_mutate_record(rng, rng.choice([BOUNCE, COMPLAINT, TRANSIENT]))).encode() for _ in range(150)]
    bodies += [json.dumps(peer.notification(BOUNCE, topic=OTHER_TOPIC)).encode()]
    outcomes = {"refused": 0, "applied": 0}
    for body in bodies:
        try:
            events = parse_notification(body, settings.ses.topic_arns)
        except NotificationError:
            outcomes["refused"] += 1
            continue
        apply_events(store, events)  # a value the store cannot hold would raise here (PostgreSQL is strict)
        outcomes["applied"] += 1
    assert outcomes["refused"] > 100 and outcomes["applied"] > 20, outcomes
