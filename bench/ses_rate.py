"""Benchmark the SES rate bound: the real send loop against moto's server with MaxSendRate set to 50/s.

moto reports a quota of 1/s and never throttles, so the limit is given to the limiter as SES's
GetAccount would give it. Measures, over `--seconds` (30), the throughput and the most requests that
left in any one-second window. Run: `python bench/ses_rate.py [--rate 50] [--seconds 30]`.
"""

from __future__ import annotations

import argparse
import bisect
import os
import tempfile
import time
from pathlib import Path

from _common import copy_publication, send_sample_issue

from newsletter.config import load_settings
from newsletter.ratelimit import RateLimiter
from newsletter.store import insert_subscribers, open_store
from newsletter.transports.base import OutgoingMessage, SendResult
from newsletter.transports.ses import SesTransport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("ses", region_name="us-east-1", endpoint_url=endpoint).verify_domain_identity(
        Domain="papers.example.com"
    )
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    transport = SesTransport(boto3.client("sesv2", region_name="us-east-1", endpoint_url=endpoint, config=config))
    stamps: list[float] = []
    original = transport.send

    def timed_send(message: OutgoingMessage) -> SendResult:
        stamps.append(time.monotonic())  # the moment the request leaves
        return original(message)

    transport.send = timed_send  # type: ignore[method-assign]
    count = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        folder = copy_publication(Path(tmp))
        with open_store(load_settings(folder).database_url) as store:
            insert_subscribers(store, ({"email": f"r{n}@example.com"} for n in range(count)), source="bench")
        outcome = send_sample_issue(folder, transport, RateLimiter(args.rate))
    server.stop()
    span = stamps[-1] - stamps[0]
    throughput = (len(stamps) - 1) / span
    busiest = max(bisect.bisect_left(stamps, start + 1.0) - i for i, start in enumerate(stamps))
    print(
        f"{outcome.progress.sent:,} sent over {span:.1f} s: {throughput:.2f} messages/s "
        f"({(throughput / args.rate - 1) * 100:+.1f} % of the {args.rate:g}/s limit); "
        f"busiest one-second window: {busiest} requests"
    )


if __name__ == "__main__":
    main()
