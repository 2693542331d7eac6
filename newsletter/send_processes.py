"""Worker processes for a fast send: the CPU of each request (personalising, signing, HTTP) spread over the cores.

One interpreter runs one thread at a time, so one process tops out near PER_PROCESS_RATE SES requests a second
here. The children are forked at the start of a send whose account rate passes that, before any thread starts:
they inherit the messages and the transport (which has opened no connection yet, so each child's connections are
its own), never touch the store, ignore Ctrl-C (the parent stops them) and end when their pipes close, also when
the parent is killed. While this sender's share of the rate passes PER_PROCESS_RATE, each of the send loop's
worker threads takes its rate-limit slot and hands the delivery over a pipe (its lane) to a partner thread in a
child, which personalises the message and makes the attempt; the result comes back over the same pipe. While
other senders share the rate and the share is lower, the parent's threads make the attempts themselves and the
children wait; the send loop, the rate limiter and the send log stay in the parent either way.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .errors import TransportError
from .messages import MessageError
from .store import Delivery
from .transports.base import OutgoingMessage, SendResult, Transport

JOIN_SECONDS = 10.0
# SES requests a second one process keeps (bench/ses_quota.py, 50 ms: at 700/s one process 92-95 % of the quota
# after the ramp at 0.72x the CPU a message of two worker processes; at 1,000/s it falls behind them). Above it
# the lanes carry the requests; at or below it this process's threads make them, at less CPU a message.
PER_PROCESS_RATE = 700


class LaneError(Exception):
    """A child process went away (killed, or its pipe broke)."""


class ProcessLanes:
    """`lanes` pipes to `processes` forked children, each child serving its share of the lanes with threads."""

    def __init__(
        self,
        lanes: int,
        processes: int,
        transport: Transport,
        prepare: Callable[[Delivery], tuple[OutgoingMessage, str]],
    ) -> None:
        self.lanes = lanes
        self.processes = max(1, min(processes, lanes))
        self.transport = transport
        self.prepare = prepare
        self.parent_ends: list[Connection] = []
        self.children: list[int] = []

    def start(self) -> None:
        """Fork the children; call before this process starts any thread."""
        context = multiprocessing.get_context("fork")
        pairs = [context.Pipe(duplex=True) for _ in range(self.lanes)]
        for index in range(self.processes):
            mine = [child for n, (_, child) in enumerate(pairs) if n % self.processes == index]
            pid = os.fork()
            if pid == 0:  # the child: serve its lanes, then leave without running the parent's finalizers
                code = 0
                try:
                    for parent_end, _ in pairs:
                        parent_end.close()
                    self._serve(mine)
                except BaseException:  # noqa: BLE001 - a child must never return into the parent's code
                    code = 1
                finally:
                    os._exit(code)
            self.children.append(pid)
        for _, child_end in pairs:
            child_end.close()
        self.parent_ends = [parent_end for parent_end, _ in pairs]

    def _serve(self, ends: list[Connection]) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        threads = [threading.Thread(target=self._lane, args=(end,), daemon=True) for end in ends]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.transport.close()

    def _lane(self, end: Connection) -> None:
        """A child's thread: attempts until the parent sends None or goes away."""
        while True:
            try:
                delivery = end.recv()
            except (EOFError, OSError):
                return
            if delivery is None:
                return
            reply: tuple[Any, ...]
            try:
                outgoing, message_id = self.prepare(delivery)
                reply = ("result", self.transport.send(outgoing), message_id)
            except MessageError as err:
                reply = ("message", str(err))
            except TransportError as err:
                reply = ("transport", err.where, err.message, err.hint)
            except Exception as err:  # noqa: BLE001 - a bug: said in the parent, where it can be seen
                reply = ("bug", f"{type(err).__name__}: {err}")
            try:
                end.send(reply)
            except (OSError, ValueError):
                return

    def attempt(self, lane: int, delivery: Delivery) -> tuple[SendResult, str]:
        """One attempt in a child; raises MessageError or TransportError as the transport would."""
        end = self.parent_ends[lane]
        try:
            end.send(delivery)
            reply = end.recv()
        except (EOFError, OSError) as err:
            raise LaneError(f"a sending process went away: {err or 'its pipe closed'}") from None
        kind = reply[0]
        if kind == "result":
            return reply[1], reply[2]
        if kind == "message":
            raise MessageError(reply[1])
        if kind == "transport":
            raise TransportError(reply[1], reply[2], reply[3])
        raise RuntimeError(reply[1])

    def close(self) -> None:
        """Tell every lane to stop and wait for the children."""
        for end in self.parent_ends:
            try:
                end.send(None)
                end.close()
            except (OSError, ValueError):
                continue
        for pid in self.children:
            _wait(pid)
        self.children = []


def _wait(pid: int) -> None:
    """Reap a child; one that does not end within JOIN_SECONDS is killed."""
    deadline = threading.Event()
    for _ in range(int(JOIN_SECONDS * 10)):
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        deadline.wait(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
