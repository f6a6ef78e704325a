"""Make docs/preview.png: the live preview page of a real run, photographed by headless Chromium.

    .venv/bin/python bench/preview_screenshot.py [--out docs/preview.png] [--streams 1] [--wait 25]

Runs ``python -m aknet_edge.run`` on the synthetic source (looping) with the demo package and a preview
port (``--runner peer`` runs tests/peers/preview_run.py instead, the same wiring; ``auto``, the default,
takes the CLI once it has ``--preview-token``), opens the page in headless Chromium (Debian's chromium and
chromium-driver, selenium from PyPI), waits until every card shows a label, video and at least
``--events`` events, then saves the screenshot and stops the run with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "peers"))

import chromium  # noqa: E402  (tests/peers/chromium.py: the browser and the live run, shared with the tests)

SOURCE = "synthetic://?seed=1&fps=15&segments=6&size=112&loop=1"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "docs" / "preview.png"))
    p.add_argument("--package", help="model package (default: the demo package, built on first use)")
    p.add_argument("--runner", choices=("cli", "peer"), default="cli",
                   help="cli: python -m aknet_edge.run; peer: tests/peers/preview_run.py (one recogniser per stream)")
    p.add_argument("--streams", type=int, default=1, help="streams on the page (peer runner only)")
    p.add_argument("--events", type=int, default=3, help="events each card shows before the picture")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for them")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=1000)
    args = p.parse_args()
    why = chromium.missing()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    runner = args.runner
    if args.package:
        package = Path(args.package)
    else:
        from aknet_edge.run import demo_package

        package = demo_package()
    extra = [a for i in range(args.streams) for a in ("--stream", f"camera-{i + 1}")] if args.streams > 1 else []
    if extra and runner != "peer":
        print("error: --streams > 1 needs --runner peer (one recogniser per stream)", file=sys.stderr)
        return 2
    with chromium.LiveRun(package, SOURCE, runner=runner, extra=extra) as run:
        browser = chromium.open_browser(args.width, args.height)
        try:
            browser.get(run.url)
            script = ("const cs=[...document.querySelectorAll('.card')];"
                      "return cs.length && cs.every(c => c.querySelector('.video').dataset.seq &&"
                      f" c.querySelectorAll('.events li').length >= {args.events} &&"
                      " c.querySelector('.tele b'));")
            ready = chromium.wait_for(lambda: browser.execute_script(script), args.wait)
            if not ready:
                print(f"error: the page did not show {args.events} events within {args.wait:.0f} s", file=sys.stderr)
                return 1
            time.sleep(1.0)  # one more result and telemetry tick: bars settled
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            # the whole page, however tall (Chrome DevTools Protocol; the window's own screenshot is the viewport)
            width, height = browser.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
            out.write_bytes(base64.b64decode(shot["data"]))
            print(f"wrote {out} ({runner} runner, {run.url})")
        finally:
            browser.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
