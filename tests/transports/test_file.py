"""The file transport: private files, and many threads (the web app's) writing while others close()."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.transports.base import OutgoingMessage
from newsletter.transports.file import FileTransport, file_name


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual default umask, under which plain creation makes files 0644 and folders 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _message(recipient: str) -> OutgoingMessage:
    return OutgoingMessage(
        "editor@example.com", recipient, (f"To: {recipient}\r\n\r\nhello\r\n".encode(),), "slug", "en"
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_messages_and_folders_are_private_whatever_the_umask(tmp_path: Path, umask_022: None) -> None:
    folder = tmp_path / "outbox" / "2023-09-25-top-ml-papers"
    transport = FileTransport(folder)
    transport.send(_message("kim@example.com"))
    transport.close()
    assert _mode(tmp_path / "outbox") == 0o700 and _mode(folder) == 0o700
    assert _mode(folder / file_name("kim@example.com")) == 0o600


def test_close_removes_only_what_dead_processes_left(tmp_path: Path) -> None:
    transport = FileTransport(tmp_path)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)  # a process that has exited
    in_flight = tmp_path / f".{file_name('a@example.com')}.{os.getpid()}-k2x9q0zz.tmp"  # another thread's write
    left_over = tmp_path / f".{file_name('b@example.com')}.{dead}-abcdefgh.tmp"
    older = tmp_path / f".{file_name('c@example.com')}.{dead}.tmp"  # the name older versions used
    for path in (in_flight, left_over, older):
        path.write_bytes(b"partial")
    transport.close()
    assert in_flight.exists()
    assert not left_over.exists() and not older.exists()


def test_threads_writing_while_others_close_lose_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "outbox" / "confirmations"
    writers, per_writer = 8, 60
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(writers + 2)

    def write(n: int) -> None:
        start.wait()
        try:
            for i in range(per_writer):
                transport = FileTransport(folder)  # one per request, as the web app does
                transport.send(_message(f"w{n}.m{i}@example.com"))
                transport.close()
        except BaseException as err:  # noqa: BLE001 - every failure is reported below
            errors.append(err)

    def close_repeatedly() -> None:
        start.wait()
        transport = FileTransport(folder)
        while not done.is_set():
            transport.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    closers = [threading.Thread(target=close_repeatedly) for _ in range(2)]
    for thread in threads + closers:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    for thread in closers:
        thread.join(timeout=60)
    assert errors == []
    for n in range(writers):
        for i in range(per_writer):
            recipient = f"w{n}.m{i}@example.com"
            assert (folder / file_name(recipient)).read_bytes() == _message(recipient).raw
    assert not list(folder.glob(".*.tmp"))


def test_test_copies_have_a_file_per_edition_and_sends_one_per_recipient(tmp_path: Path) -> None:
    """`send --test ADDR` hands over every edition to one address: none may overwrite another."""
    transport = FileTransport(tmp_path)
    assert transport.max_in_flight == 4 and transport.quota() is None
    for lang in ("ko", "en"):
        raw = f"To: kim@example.com\r\nContent-Language: {lang}\r\n\r\n{lang}\r\n".encode()
        transport.send(OutgoingMessage("editor@example.com", "kim@example.com", (raw,), "slug", lang, test=True))
        transport.send(OutgoingMessage("editor@example.com", "lee@example.com", (raw,), "slug", lang))
    digest = file_name("kim@example.com").removesuffix(".eml")
    assert sorted(p.name for p in tmp_path.glob("*.eml")) == sorted(
        [f"{digest}.en.eml", f"{digest}.ko.eml", file_name("lee@example.com")]
    )
    assert (tmp_path / f"{digest}.ko.eml").read_bytes().endswith(b"\r\n\r\nko\r\n")
    assert (tmp_path / file_name("lee@example.com")).read_bytes().endswith(b"\r\n\r\nen\r\n")  # the last one
