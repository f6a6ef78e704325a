"""The preview page in a real browser: headless Chromium against a live runtime on the synthetic source.

Debian's ``chromium`` and ``chromium-driver`` with ``selenium`` from PyPI (no browser download); skipped with
the reason where any of them is missing. The runtime runs as a subprocess: ``python -m aknet_edge.run`` once
run.py has the preview flags (``runner="cli"``), and tests/peers/preview_run.py, the same wiring, always.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "peers"))
import chromium  # noqa: E402  (tests/peers/chromium.py)

from test_runtime_support import demo_package  # noqa: E402

SOURCE = "synthetic://?seed=1&fps=15&segments=6&size=112&loop=1"
PAGE_TIMEOUT_S = 60.0  # label, confidence, an event and video must all show within this

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(chromium.missing() is not None, reason=f"no headless browser: {chromium.missing()}")]

# what a card shows, read from the page's DOM
CARDS_JS = """
return [...document.querySelectorAll('.card')].map(c => ({
  stream: c.dataset.stream,
  label: c.querySelector('.label').textContent,
  confidence: c.querySelector('.conf').textContent,
  bar: c.querySelector('.confbar > div').style.width,
  topk: c.querySelectorAll('.topk .bar').length,
  events: [...c.querySelectorAll('.events li')].map(li => li.dataset.label),
  timeline: c.querySelectorAll('svg rect').length,
  seq: Number(c.querySelector('.video').dataset.seq || 0),
  natural: [c.querySelector('.video').naturalWidth, c.querySelector('.video').naturalHeight],
  tele: Object.fromEntries([...c.querySelectorAll('.tele div')].map(d => [d.dataset.name, d.querySelector('b').textContent])),
  state: c.querySelector('.state').textContent,
}));
"""


def _get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read(65536)  # an MJPEG stream never ends: its first bytes are enough
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _ready(card: dict, labels: set) -> bool:
    return (card["label"] in labels and card["confidence"] not in ("", "\u2013") and len(card["events"]) >= 1
            and card["seq"] > 0 and card["natural"][0] > 0 and card["tele"].get("capture fps") not in (None, "\u2013"))


def _video_is_not_blank(browser, stream: str) -> np.ndarray:
    from selenium.webdriver.common.by import By

    png = browser.find_element(By.CSS_SELECTOR, f'.card[data-stream="{stream}"] .video').screenshot_as_png
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and min(img.shape[:2]) >= 100, None if img is None else img.shape
    assert float(img.std()) > 10.0 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # a picture, not a fill
    return img


@pytest.mark.parametrize("runner", ["peer", "cli"])
def test_the_page_shows_a_live_run_and_closing_the_browser_leaves_it_running(runner, tmp_path_factory):
    pkg = demo_package(tmp_path_factory)
    labels = set((pkg / "labels.txt").read_text().split())
    token = "tok-" + secrets.token_hex(6)
    with chromium.LiveRun(pkg, SOURCE, runner=runner, extra=["--preview-token", token]) as run:
        # without the token: 401 and no frame, on every path
        for path in ("", "frame.jpg", "stream.mjpg", "events", "state.json", "?token=wrong"):
            status, body = _get(run.url + path)
            assert status == 401 and b"\xff\xd8" not in body, (path, status)
        # the runtime's own threads all run once it has results (inference starts some lazily)
        state = lambda: json.loads(_get(run.url + "state.json?token=" + token)[1])["streams"]  # noqa: E731
        assert chromium.wait_for(lambda: state() and state()[0]["result"], PAGE_TIMEOUT_S), "no result"
        time.sleep(1.5)
        baseline = chromium.threads_of(run.proc.pid)
        browser = chromium.open_browser(1280, 900)
        try:
            browser.get(run.url)  # the page without its token: refused, no video
            assert "401" in browser.page_source and not browser.execute_script(CARDS_JS)
            t0 = time.monotonic()
            browser.get(run.url + "?token=" + token)
            cards = chromium.wait_for(lambda: [c for c in browser.execute_script(CARDS_JS) if _ready(c, labels)],
                                      PAGE_TIMEOUT_S)
            took = time.monotonic() - t0
            assert cards, f"the page did not show a label, an event and video within {PAGE_TIMEOUT_S:.0f} s: " \
                          f"{browser.execute_script(CARDS_JS)}"
            card = cards[0]
            # one card, named as the JSON Lines name the stream ("0": the CLI's first source; the peer's default)
            assert len(browser.execute_script(CARDS_JS)) == 1 and card["stream"] in ("0", "default")
            assert 0 <= float(card["confidence"]) <= 1
            assert card["bar"].endswith("%") and card["topk"] >= 2 and card["timeline"] >= 1
            assert set(card["events"]) <= labels and card["state"] == "live"
            assert card["natural"] == [560, 560]  # the 112 px camera, scaled up for display
            assert float(card["tele"]["capture fps"]) > 5
            _video_is_not_blank(browser, card["stream"])
            seq = card["seq"]
            assert chromium.wait_for(lambda: browser.execute_script(CARDS_JS)[0]["seq"] > seq, 10), "video froze"
            print(f"page ready after {took:.1f} s: {card['label']} {card['confidence']}, events {card['events']}")
            assert chromium.threads_of(run.proc.pid) > baseline  # the page's event stream is served
        finally:
            browser.quit()  # mid-stream
        # the runtime goes on, and the page's connection thread is gone
        assert chromium.wait_for(lambda: chromium.threads_of(run.proc.pid) <= baseline, 15), \
            f"threads: {chromium.threads_of(run.proc.pid)} after the browser left, {baseline} before"
        frame = state()[0]["result"]["frame"]
        assert chromium.wait_for(lambda: state()[0]["result"]["frame"] > frame, 10) and run.alive()
        assert run.stop() == 0, "".join(run.stderr)[-3000:]
    err = "".join(run.stderr)
    assert "Traceback" not in err and "Exception occurred" not in err, err[-3000:]


def test_every_stream_gets_a_card(tmp_path_factory):
    """Two recognisers on one page (the multi-camera layout): two cards, each with its label and video."""
    pkg = demo_package(tmp_path_factory)
    labels = set((pkg / "labels.txt").read_text().split())
    with chromium.LiveRun(pkg, "synthetic://?seed=2&fps=10&segments=6&size=96&loop=1", runner="peer",
                          extra=["--stream", "front", "--stream", "back"]) as run:
        browser = chromium.open_browser(1400, 900)
        try:
            browser.get(run.url)
            ok = chromium.wait_for(lambda: {c["stream"] for c in browser.execute_script(CARDS_JS)
                                            if c["label"] in labels and c["seq"] > 0} == {"front", "back"},
                                   PAGE_TIMEOUT_S)
            assert ok, browser.execute_script(CARDS_JS)
            for name in ("front", "back"):
                _video_is_not_blank(browser, name)
        finally:
            browser.quit()
        assert run.stop() == 0
