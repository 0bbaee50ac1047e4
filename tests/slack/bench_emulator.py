"""Measures the generator and the emulator (not collected by pytest; timing is not a test).

Run: ``.venv/bin/python tests/slack/bench_emulator.py [--hours 48] [--events-per-hour 5000]``.
Prints events/s for: generating, generating + rendering, serving pre-rendered pages to a
raw keep-alive HTTP client on loopback, serving cold (generated on first use), and the
unmodified slack-sdk client (which parses every page and opens a connection per call).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from slack_sdk.audit_logs import AuditLogsClient

from audit_pipeline.slack.emulator import _render_trusted, running_emulator
from audit_pipeline.slack.generator import HOUR, generate_hour, hour_volume

START = 1795478400  # 2026-11-23T00:00:00Z, a Monday


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} events/s  ({count:,} in {seconds:.2f} s)"


def bench_generator(hours: int, per_hour: int) -> None:
    """Wall-clock and CPU-time rates: the CPU one is what a busy shared machine cannot skew."""
    generate_hour(1, START, 10)  # builds the org and the action table once
    for label, render in (("generate", False), ("generate + render", True)):
        total, wall, cpu = 0, time.perf_counter(), time.process_time()
        for h in range(START, START + hours * HOUR, HOUR):
            entries = generate_hour(3 if render else 1, h, per_hour)
            if render:
                entries = [_render_trusted(e) for e in entries]
            total += len(entries)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{label:20}", rate(total, wall), f"| {total / cpu:,.0f} events per CPU-second")


def read_raw(base_url: str, token: str, start: int, end: int, parse: bool) -> tuple[int, int]:
    """Pages [start, end) with limit 9999 over one keep-alive connection; returns counts."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    cursor, count, nbytes = "", 0, 0
    while True:
        query = f"oldest={start}&latest={end - 1}&limit=9999"
        if cursor:
            query += "&cursor=" + cursor.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        conn.request("GET", f"{url.path}logs?{query}", headers=headers)
        body = conn.getresponse().read()
        nbytes += len(body)
        if parse:
            doc = json.loads(body)
            count += len(doc["entries"])
            cursor = (doc.get("response_metadata") or {}).get("next_cursor", "")
        else:
            count += body.count(b'"date_create":')
            marker = body.rfind(b'"next_cursor":"')
            cursor = body[marker + 15 : body.rfind(b'"')].decode() if marker >= 0 else ""
        if not cursor:
            conn.close()
            return count, nbytes


def bench_serving(hours: int, per_hour: int) -> None:
    end = START + hours * HOUR
    expected = sum(hour_volume(1, h, per_hour) for h in range(START, end, HOUR))
    fields = dict(start=START, end=end, events_per_hour=per_hour, rate_limit_per_min=0, seed=1)
    fields["clock"] = lambda: float(end + HOUR)
    with running_emulator(prerender=True, **fields) as emu:
        for parse in (False, True):
            started = time.perf_counter()
            count, nbytes = read_raw(emu.base_url, emu.token, START, end, parse)
            elapsed = time.perf_counter() - started
            assert count == expected, (count, expected)
            label = "serve warm, raw+json" if parse else "serve warm, raw bytes"
            print(f"{label:20}", rate(count, elapsed), f"{nbytes / elapsed / 1e6:.0f} MB/s")
        client = AuditLogsClient(token=emu.token, base_url=emu.base_url)
        started, count, cursor = time.perf_counter(), 0, None
        while True:
            body = client.logs(oldest=START, latest=end - 1, limit=9999, cursor=cursor).body
            count += len(body["entries"])
            cursor = (body.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        print("serve warm, slack-sdk", rate(count, time.perf_counter() - started))
    with running_emulator(**fields) as emu:
        started = time.perf_counter()
        count, _ = read_raw(emu.base_url, emu.token, START, end, parse=False)
        print("serve cold, raw bytes", rate(count, time.perf_counter() - started))


def bench_cli(hours: int, per_hour: int) -> None:
    """The emulator in its own process (as ``audit-pipeline emulator``), read cold."""
    end = int(time.time()) // HOUR * HOUR
    start = end - hours * HOUR
    label = [time.strftime("%Y-%m-%dT%H", time.gmtime(t)) for t in (start, end)]
    script = Path(sys.executable).with_name("audit-pipeline")
    proc = subprocess.Popen(
        [str(script), "emulator", "--port", "0", "--start", label[0], "--end", label[1],
         "--events-per-hour", str(per_hour), "--rate-limit", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        base_url = proc.stdout.readline().strip()
        for parse in (False, True):
            started = time.perf_counter()
            count, _ = read_raw(base_url, "xoxp-emulator-token", start, end, parse)
            label_ = "subprocess, raw+json" if parse else "subprocess, raw bytes"
            print(f"{label_:20}", rate(count, time.perf_counter() - started), "(cold, then warm)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--events-per-hour", type=int, default=5000)
    args = parser.parse_args()
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        os.environ.pop(var, None)
    print(f"{args.hours} hours at ~{args.events_per_hour} events/hour, {os.cpu_count()} CPUs")
    bench_generator(args.hours, args.events_per_hour)
    bench_serving(args.hours, args.events_per_hour)
    bench_cli(args.hours, args.events_per_hour)


if __name__ == "__main__":
    main()
