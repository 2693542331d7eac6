"""`newsletter doctor`: what mailbox providers require of bulk senders, checked before a send, one finding a line.

It reads the settings, renders the newest issue and asks peers (the unsubscribe host, SES, DNS); it writes
nothing and never touches the subscriber store or the send log. One module per group of checks, each returning
Findings; `run_doctor` runs them in order.
"""

from .findings import Finding, Status
from .run import DoctorOptions, run_doctor

__all__ = ["DoctorOptions", "Finding", "Status", "run_doctor"]
