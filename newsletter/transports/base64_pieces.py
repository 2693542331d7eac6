"""base64 of a message given as the pieces it was joined from, reusing the encodings of the large pieces that every
message of an edition shares.

SES's SendEmail carries the raw message base64-encoded. Encoding the sample issue's 117 KB message costs about
0.5 ms of CPU here, the largest single cost of a request, although all but a few hundred bytes of it are the
edition's constant pieces (messages.py joins them around the recipient's lines). base64 works on groups of three
bytes, so the encoding of a piece depends only on where it starts within such a group: each large piece is
encoded once for each of the three starts it is found at, and a message's encoding is joined from those, with the
few bytes between the pieces encoded afresh. The output is exactly `base64.b64encode(b"".join(pieces))`.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable

REUSE_FROM = 4096  # bytes: pieces at least this long are encoded once (a shorter one costs less than the lookup)
MOST_KEPT = 256  # pieces kept; more (many editions in one process) and the oldest are dropped


class Base64Pieces:
    """Encodes pieces, reusing what it encoded of a piece before (by identity: the same bytes object); safe to
    share between threads."""

    def __init__(self) -> None:
        # id(piece) -> (the piece itself, which keeps its id from being reused, and its encodings by start)
        self._kept: dict[int, tuple[bytes, list[bytes | None]]] = {}
        self._lock = threading.Lock()

    def encode(self, pieces: Iterable[bytes]) -> list[bytes]:
        """base64 of the pieces joined, as a list of parts to join."""
        out: list[bytes] = []
        carry = b""  # the 0-2 bytes of the pieces so far that do not fill a group of three
        for piece in pieces:
            if len(piece) < REUSE_FROM:
                data = carry + piece
                whole = len(data) - len(data) % 3
                out.append(base64.b64encode(data[:whole]))
                carry = data[whole:]
                continue
            start = (3 - len(carry)) % 3  # bytes of this piece that complete the carried group
            if carry:
                out.append(base64.b64encode(carry + piece[:start]))
            end = start + (len(piece) - start) // 3 * 3
            out.append(self._middle(piece, start, end))
            carry = piece[end:]
        out.append(base64.b64encode(carry))
        return out

    def _middle(self, piece: bytes, start: int, end: int) -> bytes:
        """base64 of piece[start:end] (end: the last whole group), encoded once per piece and start."""
        with self._lock:
            kept = self._kept.get(id(piece))
            if kept is not None and kept[0] is piece and (encoded := kept[1][start]) is not None:
                return encoded
        encoded = base64.b64encode(memoryview(piece)[start:end])
        with self._lock:
            kept = self._kept.get(id(piece))
            if kept is None or kept[0] is not piece:
                if len(self._kept) >= MOST_KEPT:
                    del self._kept[next(iter(self._kept))]
                kept = (piece, [None, None, None])
                self._kept[id(piece)] = kept
            kept[1][start] = encoded
        return encoded
