"""Per person: recognition of each tracked actor against whole-frame recognition, and its cost.

    python bench/actors.py [--package DIR] [--seeds 0-5] [--rounds 3] [--quick]

Two measurements on synthetic multi-actor scenes (aknet_edge/scenes.py: 2 to 4
actors, each doing its own actions in its own drifting tile of a larger,
textured frame; ground-truth boxes and labels per actor):

* accuracy: windows whose span lies inside one action of an actor, scored by the
  window's raw top-1 against that action:
  - per actor with the true boxes as tracks, for three crops: *causal* (what the
    runtime does: the union of the track's boxes over the last window span up to
    each frame, widened and made square; works with incremental encoding),
    *per-frame box* (only the current box, widened and made square) and
    *window union* (the union over the whole window, known only once the window
    is complete: emulated here by feeding each frame the boxes of the window it
    ends, which a live runtime could only do by re-cropping every sample of the
    window, i.e. whole-clip inference per actor);
  - the same actors' videos alone (their tiles, the single-actor evaluation);
  - whole-frame recognition of the scene (one label for the frame), scored
    against every actor;
* cost: N = 1, 2, 4, 8 tracks of one camera batched in one recogniser against
  N separate recognisers (one per actor, on the actors' crops), side by side,
  rounds interleaved: windows per second and the ratio.

Prints tables and writes bench/results/actors.json. ``--quick`` only checks the
script runs (tiny sizes): its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from aknet_edge.io_utils import atomic_write_text
from timing import machine_name, median_quartiles  # bench/timing.py

REPO = Path(__file__).resolve().parents[1]


def _window_label(actor, t0: float, t1: float):
    """The actor's action over [t0, t1] when one action covers the whole window, else None (not scored)."""
    for s in actor.segments:
        if s.start <= t0 and t1 <= s.end:
            return s.name
    return None


def _score(results, actors) -> Tuple[int, int]:
    hit = n = 0
    for r in results:
        for a in actors:
            if r.track is not None and r.track != a.id:
                continue
            want = _window_label(a, r.window_start, r.timestamp)
            if want is None:
                continue
            n += 1
            hit += int(r.top_k[0][0] == want)
    return hit, n


def _lookahead(scene, span: float) -> Dict[float, list]:
    """Each frame's boxes replaced by the union of the track's boxes over the window that ends at that frame's
    window end, i.e. [t, t + span] (the window-union crop, known only once the window is complete)."""
    frames = list(scene.frames())
    out = {}
    for k, (t, _, boxes) in enumerate(frames):
        later = [b for tt, _, bs in frames[k:] if tt <= t + span for b in bs]
        merged = []
        for tid, _ in boxes:
            own = [b for i, b in later if i == tid]
            x0, y0 = min(b[0] for b in own), min(b[1] for b in own)
            x1, y1 = max(b[0] + b[2] for b in own), max(b[1] + b[3] for b in own)
            merged.append((tid, (x0, y0, x1 - x0, y1 - y0)))
        out[round(t, 6)] = merged
    return out


def accuracy(pkg: Path, seeds: List[int], segments: int, margin: float) -> Dict[str, Dict[str, float]]:
    from aknet_edge.runtime import Recognizer
    from aknet_edge.runtime.sources.memory import ArraySource
    from aknet_edge.runtime.tracks import TrackFeed
    from aknet_edge.scenes import multi_actor_scene
    from aknet_edge.synthetic import iter_long_video

    tally: Dict[str, List[int]] = {k: [0, 0] for k in ("causal", "per_frame_box", "window_union", "alone",
                                                       "whole_frame")}
    for seed in seeds:
        n_actors = 2 + seed % 3
        scene = multi_actor_scene(seed, actors=n_actors, segments=segments)
        frames = [f for _, f, _ in scene.frames()]
        truth = list(scene.frames())

        def run(**kw):
            with Recognizer(pkg, ArraySource(frames, fps=scene.fps, color="RGB"), **kw) as rec:
                return list(rec)

        span = None
        for mode in ("causal", "per_frame_box", "window_union"):
            feed = TrackFeed()
            if mode == "window_union":
                if span is None:
                    from aknet_edge.package import load

                    span = load(pkg).clip_spec.span_s
                ahead = _lookahead(scene, span)
                for t, _, _ in truth:
                    feed.push(t, ahead[round(t, 6)])
            else:
                for t, _, boxes in truth:
                    feed.push(t, boxes)
            # per-frame box: a span too short to hold more than the current box
            kw = {"track_margin": margin}
            res = run(tracks=feed, **kw) if mode != "per_frame_box" else _per_frame(pkg, frames, scene, feed, kw)
            h, n = _score(res, scene.actors)
            tally[mode][0] += h
            tally[mode][1] += n
        for i, a in enumerate(scene.actors):  # each actor's own video, alone (the tile the scene shows)
            _, it = iter_long_video(seed * 1009 + i + 1, len(a.segments), scene.fps, a.tile)
            tile = [f for _, f in it][: len(frames)]
            with Recognizer(pkg, ArraySource(tile, fps=scene.fps, color="RGB")) as rec:
                res = list(rec)
            for r in res:
                r.track = a.id
            h, n = _score(res, [a])
            tally["alone"][0] += h
            tally["alone"][1] += n
        h, n = _score(run(), scene.actors)  # whole frame: one label, scored against every actor
        tally["whole_frame"][0] += h
        tally["whole_frame"][1] += n
    return {k: {"top1": 100.0 * h / max(1, n), "windows": n} for k, (h, n) in tally.items()}


def _per_frame(pkg: Path, frames, scene, feed, kw):
    """Tracks cropped by the current box only: the router's span set to one frame interval."""
    from aknet_edge.runtime import Recognizer, pipeline
    from aknet_edge.runtime.sources.memory import ArraySource

    real = pipeline.TrackRouter

    class OneFrame(real):  # type: ignore[misc, valid-type]
        def __init__(self, feed, stream, options, span_s):
            super().__init__(feed, stream, options, 0.5 / scene.fps)

    pipeline.TrackRouter = OneFrame
    try:
        with Recognizer(pkg, ArraySource(frames, fps=scene.fps, color="RGB"), tracks=feed, **kw) as rec:
            return list(rec)
    finally:
        pipeline.TrackRouter = real


def cost(pkg: Path, counts: List[int], seconds: float, rounds: int) -> List[dict]:
    """N tracks batched in one recogniser against N separate recognisers on the actors' crops."""
    from aknet_edge.runtime import Recognizer
    from aknet_edge.runtime.sources.memory import ArraySource
    from aknet_edge.runtime.tracks import TrackFeed
    from aknet_edge.scenes import multi_actor_scene

    scene = multi_actor_scene(100, actors=4, segments=4)
    truth = list(scene.frames())
    n_frames = min(len(truth), int(seconds * scene.fps))
    truth = truth[:n_frames]
    frames = [f for _, f, _ in truth]
    rows = []
    for n in counts:
        def tracks_of(t_boxes):  # n tracks: the 4 actors, repeated under other ids beyond 4
            return [(f"{i}", t_boxes[i % len(t_boxes)][1]) for i in range(n)]

        crops = []
        for i in range(n):
            tid = i % len(scene.actors)
            crops.append([f[b[1]:b[1] + b[3], b[0]:b[0] + b[2]] for (_, f, bs) in truth for b in [bs[tid][1]]])
        batched, separate = [], []
        for _ in range(rounds):
            feed = TrackFeed()
            for t, _, boxes in truth:
                feed.push(t, tracks_of(boxes))
            with Recognizer(pkg, ArraySource(frames, fps=scene.fps, color="RGB"), tracks=feed, max_tracks=n,
                            queue_size=100000) as rec:  # started (sessions made) before the clock, as below
                t0 = time.perf_counter()
                w = sum(1 for _ in rec)
                batched.append(w / (time.perf_counter() - t0))
            recs = [Recognizer(pkg, ArraySource(c, fps=scene.fps, color="RGB"), queue_size=100000) for c in crops]
            counts_w = [0] * n

            def drain(i: int) -> None:
                counts_w[i] = sum(1 for _ in recs[i])

            for r in recs:
                r.start()
            t0 = time.perf_counter()
            th = [threading.Thread(target=drain, args=(i,)) for i in range(n)]
            for x in th:
                x.start()
            for x in th:
                x.join()
            separate.append(sum(counts_w) / (time.perf_counter() - t0))
            for r in recs:
                r.close()
        ratio = median_quartiles([b / s for b, s in zip(batched, separate)])
        rows.append({"tracks": n, "batched_windows_per_s": statistics.median(batched),
                     "separate_windows_per_s": statistics.median(separate), "ratio": ratio[0],
                     "ratio_q1": ratio[1], "ratio_q3": ratio[2],
                     "batched_ms_per_actor_window": 1e3 / statistics.median(batched),
                     "separate_ms_per_actor_window": 1e3 / statistics.median(separate)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", type=Path, help="model package (default: the bundled demo package)")
    ap.add_argument("--seeds", default="0-5", help="scene seeds for the accuracy table, A-B or a comma list")
    ap.add_argument("--segments", type=int, default=4, help="actions per actor")
    ap.add_argument("--tracks", default="1,2,4,8", help="track counts for the cost table")
    ap.add_argument("--seconds", type=float, default=8.0, help="scene seconds per cost run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--margin", type=float, default=0.0, help="the tracks' crop margin (track_margin)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "actors.json")
    args = ap.parse_args()
    if args.package is None:
        from aknet_edge.run import demo_package

        args.package = demo_package()
    if "-" in args.seeds:
        a, b = args.seeds.split("-")
        seeds = list(range(int(a), int(b) + 1))
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
    counts = [int(n) for n in args.tracks.split(",")]
    if args.quick:
        seeds, counts, args.seconds, args.rounds, args.segments = seeds[:1], counts[:2], 3.0, 1, 2
    acc = accuracy(args.package, seeds, args.segments, args.margin)
    print(f"per-actor top-1 on windows inside one action ({len(seeds)} scenes, 2-4 actors each; {args.package.name}; "
          f"track_margin {args.margin})")
    print(f"{'crop':<16}{'top-1 %':>9}{'windows':>9}")
    for k, v in acc.items():
        print(f"{k:<16}{v['top1']:>9.1f}{v['windows']:>9d}")
    rows = cost(args.package, counts, args.seconds, args.rounds)
    print(f"\ncost: N tracks in one recogniser vs N separate recognisers ({machine_name()}, {args.rounds} rounds)")
    print(f"{'tracks':>6}{'batched w/s':>13}{'separate w/s':>14}{'ratio':>7}{'ms/actor-window':>17}")
    for r in rows:
        print(f"{r['tracks']:>6}{r['batched_windows_per_s']:>13.1f}{r['separate_windows_per_s']:>14.1f}"
              f"{r['ratio']:>7.2f}{r['batched_ms_per_actor_window']:>17.2f}")
    if not args.quick:
        atomic_write_text(args.out, json.dumps({"machine": machine_name(), "package": str(args.package.name), "margin": args.margin,
                                                "seeds": seeds, "accuracy": acc, "cost": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
