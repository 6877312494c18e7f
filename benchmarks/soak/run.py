"""The soak under faults against a real `dlm serve` process on loopback.

    python benchmarks/soak/run.py                      # the shipped model, 64 clients, 180 s
    python benchmarks/soak/run.py --clients 64 --seconds 180 --ckpt runs/chat

Writes results.json and README.md beside this file: sent / answered / refused /
cancelled / lost / duplicated, and the server's resident memory over the soak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path

import httpx

from dlm.bench.serving import start_server
from dlm.server.load import free_port
from dlm.server.soak import soak
from dlm.shipped import SHIPPED_DIR
from dlm.util.portable import portable

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--bad-share", type=float, default=0.2)
    parser.add_argument("--drop-share", type=float, default=0.2)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite README.md from results.json, without a soak")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads((HERE / "results.json").read_text()))
        return
    port = free_port()
    proc = start_server(args.ckpt, port, 16, 4 * args.clients, "cpu")
    try:
        url = f"http://127.0.0.1:{port}"
        # warm-up, so the first sample is not the allocator's first growth
        asyncio.run(soak(url, clients=8, seconds=10, server_pid=proc.pid))
        started = time.time()
        result = asyncio.run(soak(url, clients=args.clients, seconds=args.seconds,
                                  bad_share=args.bad_share, drop_share=args.drop_share,
                                  server_pid=proc.pid))
        wall = time.time() - started
        load = httpx.get(f"{url}/health").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = {**result.to_dict(), "wall_s": round(wall, 1), "ckpt": str(args.ckpt),
           "health_after": load, "bad_share": args.bad_share, "drop_share": args.drop_share,
           "machine": f"{platform.processor() or platform.machine()}, CPU"}
    (HERE / "results.json").write_text(portable(json.dumps(out, indent=1)) + "\n")
    write_report(out)


def write_report(r: dict) -> None:
    rss = [m for _, m in r["rss_mb"]]
    third = max(len(rss) // 3, 1)
    early, late = statistics.median(rss[1:third + 1]), statistics.median(rss[-third:])
    accounted = r["answered"] + r["refused"] + r["cancelled"]
    verdict = ("flat, no growth with the requests served" if late <= 1.05 * early else
               f"it grew by {late - early:.0f} MiB from the first third to the last")
    row = "| " + " | ".join(str(r[k]) for k in (
        "clients", "seconds", "sent", "answered", "refused", "cancelled", "lost",
        "duplicated", "server_errors")) + " |"
    (HERE / "README.md").write_text(portable(f"""# Soak under faults

Command: `python benchmarks/soak/run.py --clients {r['clients']} --seconds {r['seconds']:g}`
(checkpoint: `{r['ckpt']}`); a `dlm serve` process on loopback, after a 10 s warm-up
with 8 clients. Each client loops: {r['bad_share']:.0%} bad requests (empty messages,
negative steps, huge max_tokens, unknown role, logprobs, n=1000, a completions body,
not JSON), {r['drop_share']:.0%} streams dropped after a random number of events, the
rest good streaming chats (16 tokens, 8 steps).

Machine: 2-core CPU, no GPU; torch 2.13.0+cpu. Wall time {r['wall_s']:.0f} s.

| clients | seconds | sent | answered | refused | cancelled | lost | duplicated | 5xx |
|---|---|---|---|---|---|---|---|---|
{row}

answered + refused + cancelled = {accounted} of {r['sent']} sent; load after the soak:
{r['health_after']['load']} requests waiting or running.

Server memory (resident, {len(rss)} samples in results.json): {rss[0]:.0f} MiB idle at the
start; once 64 clients are on, the median of the first third of the soak is {early:.0f}
MiB and of the last third {late:.0f} MiB (range {min(rss[1:]):.0f}–{max(rss):.0f} MiB, the
batches' working set), {rss[-1]:.0f} MiB at the end: {verdict}.
"""))
    print((HERE / "README.md").read_text())


if __name__ == "__main__":
    main()
