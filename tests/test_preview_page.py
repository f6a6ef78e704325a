"""The overlay readable at every frame size, keypoints coloured by their time, and a self-contained page.

Device-side (no torch, no browser): the page in a real browser is tests/test_preview_browser.py.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from aknet_edge.runtime import overlay
from aknet_edge.runtime.overlay import (DISPLAY_MIN_SIDE, TIME_RAMP, display_factor, draw_overlay, keypoint_colour,
                                        text_layout)
from aknet_edge.runtime.preview import PAGE, PreviewServer


def _result(keypoints, start=10.0, end=12.0, label="move_left", confidence=0.93):
    return SimpleNamespace(label=label, confidence=confidence, fps=14.9, latency_ms=21.4, timestamp=end,
                           window_start=start, keypoints=keypoints)


def _bgr(rgb):
    return tuple(reversed(rgb))


def test_keypoints_are_coloured_by_their_time_in_the_window():
    """Result keypoints are (time_s, x, y, score) tuples: the oldest gets the ramp's first colour, the newest its
    last, one in the middle neither (0.3 drew them all in the newest colour)."""
    img = np.full((200, 200, 3), 255, np.uint8)
    kps = [(10.0, 40.0, 150.0, 0.9), (11.0, 100.0, 150.0, 0.5), (12.0, 160.0, 150.0, 0.1)]
    out = draw_overlay(img, _result(kps))
    oldest, middle, newest = (tuple(int(v) for v in out[150, x]) for x in (40, 100, 160))
    assert oldest == _bgr(TIME_RAMP[0]) and newest == _bgr(TIME_RAMP[-1])
    assert middle not in (oldest, newest) and middle == keypoint_colour(11.0, 10.0, 12.0)
    assert len({oldest, middle, newest}) == 3


def test_keypoint_colour_ramp():
    assert keypoint_colour(0.0, 0.0, 2.0) == _bgr(TIME_RAMP[0])
    assert keypoint_colour(2.0, 0.0, 2.0) == _bgr(TIME_RAMP[-1])
    assert keypoint_colour(-5.0, 0.0, 2.0) == _bgr(TIME_RAMP[0]) and keypoint_colour(9.0, 0.0, 2.0) == _bgr(TIME_RAMP[-1])
    ramp = [keypoint_colour(t, 0.0, 1.0) for t in np.linspace(0, 1, 9)]
    assert len(set(ramp)) == 9  # every step of the window is told apart
    assert keypoint_colour(5.0, 5.0, 5.0) == _bgr(TIME_RAMP[-1])  # an empty window: newest


def test_a_real_result_gets_more_than_one_keypoint_colour(tmp_path_factory):
    from aknet_edge.runtime import Recognizer

    from test_runtime_support import demo_package

    with Recognizer(demo_package(tmp_path_factory), "synthetic://?seed=3&segments=2&speed=0&size=112&block=true",
                    keep_images=True, max_seconds=20) as rec:
        results = list(rec)
    colours = {keypoint_colour(t, r.window_start, r.timestamp) for r in results for t, *_ in r.keypoints}
    assert len(colours) >= 3
    spans = [max(t for t, *_ in r.keypoints) - min(t for t, *_ in r.keypoints) for r in results]
    assert max(spans) > 0.5  # a window's keypoints come from different samples


@pytest.mark.parametrize("h,w", [(32, 32), (64, 48), (112, 112), (240, 320), (480, 640), (1080, 1920), (90, 640)])
def test_text_lines_never_overlap_and_fit_the_frame(h, w):
    lines = ["rotate_ccw_very_long_label_name 0.93", "14.9 fps  21 ms"]
    layout = text_layout(lines, w, h)
    assert layout, "no text at all"
    boxes = [box for *_, box in layout]
    for x0, y0, x1, y1 in boxes:
        assert 0 <= y0 < y1 <= h and x1 <= w + 2 and x0 >= -2
    for (_, ay0, _, ay1), (_, by0, _, by1) in zip(boxes, boxes[1:]):
        assert ay1 <= by0  # stacked, never overlapping
    if min(h, w) >= 64:
        assert len(layout) == 2


def test_small_frames_are_scaled_up_for_display_only():
    img = np.zeros((112, 112, 3), np.uint8)
    img[50:60, 50:60] = 255
    assert display_factor(112, 112, DISPLAY_MIN_SIDE) == 5 and display_factor(720, 1280, DISPLAY_MIN_SIDE) == 1
    big = draw_overlay(img, _result([(11.0, 55.0, 55.0, 1.0)], 10.0, 12.0), min_side=DISPLAY_MIN_SIDE)
    assert big.shape == (560, 560, 3)
    assert tuple(int(v) for v in big[55 * 5, 55 * 5]) == keypoint_colour(11.0, 10.0, 12.0)  # keypoint moved with it
    assert big[57 * 5 + 2, 52 * 5 + 2].min() == 255  # the bright square, scaled: nearest-neighbour pixels
    same = draw_overlay(img, _result([]))
    assert same.shape == img.shape and img.max() == 255 and int(img[0, 0, 0]) == 0  # the input is not drawn on


def test_text_is_readable_on_a_small_frame():
    """At 112 px the label would be a few pixels tall; scaled for display it is at least 20 px."""
    big = text_layout(["move_left 0.93", "14.9 fps  21 ms"], 560, 560)
    x0, y0, x1, y1 = big[0][4]
    assert y1 - y0 >= 20


def test_the_page_is_self_contained():
    """Nothing from the internet: no external script, style, font or image; live updates by EventSource."""
    html = PAGE.read_text("utf-8")
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace is a name, never fetched
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)
    assert "@import" not in html and "url(" not in html
    assert "new EventSource(" in html and "setInterval" not in html  # pushed, not polled
    for part in ("confbar", "topk", "events", "tele", "ramp", "video"):
        assert f'class="{part}' in html or f'id="{part}"' in html or f'class="bar {part}' in html, part


def test_the_legend_is_the_overlay_ramp():
    with PreviewServer(port=0) as server:
        legend = server.snapshot()["legend"]
    assert legend == ["rgb(%d,%d,%d)" % c for c in overlay.TIME_RAMP]
