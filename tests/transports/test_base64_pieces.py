"""The SES body's base64, joined from pieces: always exactly base64 of the whole message."""

from __future__ import annotations

import base64
import random
import threading

from newsletter.transports import base64_pieces
from newsletter.transports.base64_pieces import REUSE_FROM, Base64Pieces


def _pieces(rng: random.Random, shared: list[bytes]) -> list[bytes]:
    """A message's pieces: the shared large pieces in order, with fresh small ones of any length around them."""
    out: list[bytes] = []
    for piece in shared:
        out += [rng.randbytes(rng.randrange(0, 9)) for _ in range(rng.randrange(0, 3))]
        out.append(piece)
    out.append(rng.randbytes(rng.randrange(0, 200)))
    return out


def test_the_joined_encoding_is_base64_of_the_whole_for_every_start_and_length() -> None:
    rng = random.Random(20261203)
    shared = [rng.randbytes(REUSE_FROM + extra) for extra in (0, 1, 2, 5000, 30001)]
    encoder = Base64Pieces()
    for _ in range(300):  # every large piece is met at each of the three starts, from the cache and afresh
        pieces = _pieces(rng, shared)
        assert b"".join(encoder.encode(pieces)) == base64.b64encode(b"".join(pieces))
    assert b"".join(encoder.encode([])) == b""


def test_a_large_piece_is_encoded_once_a_start_and_reused(monkeypatch) -> None:
    encoded: list[int] = []
    real = base64.b64encode

    def counting(data: bytes | memoryview) -> bytes:
        encoded.append(len(data))
        return real(data)

    large = b"x" * 90_000
    encoder = Base64Pieces()
    monkeypatch.setattr(base64_pieces.base64, "b64encode", counting)
    for n in range(30):
        encoder.encode([b"To: r%d@example.com\r\n" % n, large, b"--end--\r\n"])
    monkeypatch.undo()
    assert sum(1 for size in encoded if size > 80_000) <= 3  # at most once for each start
    assert sum(encoded) < 3 * 90_000 + 30 * 200


def test_pieces_that_equal_but_are_other_objects_are_encoded_for_what_they_hold() -> None:
    encoder = Base64Pieces()
    for fill in (b"a", b"b", b"c"):
        large = fill * REUSE_FROM
        assert b"".join(encoder.encode([b"1", large])) == base64.b64encode(b"1" + large)


def test_many_editions_keep_at_most_the_bound(monkeypatch) -> None:
    monkeypatch.setattr(base64_pieces, "MOST_KEPT", 4)
    encoder = Base64Pieces()
    kept = [bytes([n]) * REUSE_FROM for n in range(10)]
    for piece in kept:
        assert b"".join(encoder.encode([piece])) == base64.b64encode(piece)
    assert len(encoder._kept) <= 4
    assert b"".join(encoder.encode([b"z", kept[0]])) == base64.b64encode(b"z" + kept[0])


def test_threads_sharing_one_encoder_all_get_their_own_messages() -> None:
    rng = random.Random(7)
    shared = [rng.randbytes(20_000), rng.randbytes(50_001)]
    encoder = Base64Pieces()
    wrong: list[int] = []

    def encode_many(seed: int) -> None:
        local = random.Random(seed)
        for _ in range(100):
            pieces = _pieces(local, shared)
            if b"".join(encoder.encode(pieces)) != base64.b64encode(b"".join(pieces)):
                wrong.append(seed)

    threads = [threading.Thread(target=encode_many, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []
