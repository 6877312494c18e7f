"""Screenshots of the web page for the README: one mid-denoising, one after the reply.

    python docs/screenshots.py                  # the shipped chat model
    python docs/screenshots.py --ckpt runs/chat  # any checkpoint

Starts `dlm serve` on a free loopback port, drives Debian's chromium headless with
Playwright, and writes docs/denoise-mid.png and docs/denoise-final.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

from dlm.bench.serving import start_server
from dlm.server.load import free_port
from dlm.shipped import SHIPPED_DIR

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--prompt", default="what do you like to do on weekends?")
    parser.add_argument("--steps", default="32")
    parser.add_argument("--block-length", default="0")
    args = parser.parse_args()
    port = free_port()
    server = start_server(args.ckpt, port, max_batch=16, max_queue=16, device="cpu")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 900, "height": 640})
            page.goto(f"http://127.0.0.1:{port}/")
            for selector, value in (("#steps", args.steps), ("#length", "32"), ("#pace", "400"),
                                    ("#block", args.block_length)):
                page.fill(selector, value)
            page.fill("#input", "hello!")
            page.click("#send")
            page.wait_for_selector(".turn.assistant[data-final]", timeout=60_000)
            page.fill("#input", args.prompt)
            page.click("#send")
            # mid-way: about half of the reply still masked
            page.wait_for_function("window.dlmFrames.length >= 14", timeout=60_000)
            page.screenshot(path=str(args.out / "denoise-mid.png"))
            page.wait_for_selector(".turn.assistant:nth-of-type(4)[data-final]",
                                   timeout=60_000)
            page.screenshot(path=str(args.out / "denoise-final.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out / 'denoise-mid.png'} and {args.out / 'denoise-final.png'}")


if __name__ == "__main__":
    main()
