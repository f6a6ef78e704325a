"""Segment-level accuracy and event boundary error of a package on long synthetic videos.

Each seed writes a real video file with known action segments (our generator),
runs it through the runtime, and scores the results against the truth.

    python bench/event_accuracy.py [--package DIR] [--seeds 30 41]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from aknet_edge.io_utils import atomic_write_text
from aknet_edge.runtime import Recognizer
from aknet_edge.runtime.metrics import boundary_errors, segment_accuracy
from aknet_edge.synthetic import load_segments, write_long_video


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--package", help="model package (default: the bundled demo package, built once)")
    p.add_argument("--seeds", nargs=2, type=int, default=[30, 41], metavar=("FIRST", "LAST"))
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--out", default="bench/results/event_accuracy.json")
    args = p.parse_args(argv)
    if args.package:
        pkg = Path(args.package)
    else:
        from aknet_edge.run import demo_package

        pkg = demo_package()
    hits = total = 0
    errs = []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds[0], args.seeds[1] + 1):
            path = Path(tmp) / f"long-{seed}.avi"
            write_long_video(path, seed=seed, n_segments=args.segments, fps=15, size=112)
            with Recognizer(pkg, str(path)) as rec:
                span = rec.spec.span_s
                results = list(rec)
                events = list(rec.events)
            acc, n = segment_accuracy(results, load_segments(path), span)
            e = boundary_errors(events, load_segments(path))
            hits += round(acc * n)
            total += n
            errs.append(e)
            rows.append({"seed": seed, "segment_accuracy": acc, "segments": n})
            print(f"seed {seed}: {acc:.3f} over {n} segments", flush=True)
    e = np.concatenate(errs)
    found = e[np.isfinite(e)]
    summary = {"segment_accuracy": hits / max(1, total), "segments": total,
               "boundaries_matched": float(found.size / max(1, e.size)),
               "boundary_error_median_s": float(np.median(found)) if found.size else None,
               "boundary_within_one_window": float((found <= span).mean()) if found.size else None, "span_s": span}
    print(f"\n| seeds | segments | segment accuracy | boundaries with an event | median boundary error | within one window ({span:g} s) |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.seeds[0]}-{args.seeds[1]} | {total} | {100 * summary['segment_accuracy']:.1f}% | "
          f"{100 * summary['boundaries_matched']:.0f}% | {summary['boundary_error_median_s']:.2f} s | "
          f"{100 * summary['boundary_within_one_window']:.0f}% |")
    atomic_write_text(args.out, json.dumps({"command": " ".join(["python"] + sys.argv), "summary": summary,
                                            "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
