"""The ROS 2 node against in-process recognition of the same frames: result rate and per-frame latency.

    python bench/ros2_bench.py [--package DIR] [--topics 4] [--fps 30] [--width 640] [--height 480] [--seconds 20]

Two runs on the same footage (each topic its own synthetic scenes, rendered at ``--width`` x ``--height``):

* node: ``python -m aknet_edge.ros2`` with ``--topics`` image topics (its default QoS: sensor data, best effort),
  fed by a publisher process (``sensor_msgs/Image`` bgr8 at ``--fps`` per topic, stamped with the wall-clock time
  each frame is due); this process subscribes to ``/aknet/results``. A window's latency is its arrival here minus
  the header stamp of the frame that completed it (the first frame at or after the window's last sample time);
* in process: the same frames through a ``MultiRecognizer`` of ``ArraySource`` streams paced at ``--fps`` (what
  ``python -m aknet_edge.run`` runs), latency from the frame reaching the source to the window's scores.

Targets: node / in-process results per second >= 0.9, and the node's added latency (p50 minus p50) under one
frame interval. The first seconds (windows filling, discovery) are left out. Prints a table and writes
bench/results/ros2.json with the machine. ``--large-image-profile`` runs the ROS processes with
docs/fastdds_large_images.xml (Fast DDS shared-memory segments large enough for raw images). Needs rclpy (pip's ROS 2 Jazzy wheels: .ci/run's ros2 venv). Every ROS
process here runs with discovery on localhost and a DDS domain of its own (ROS_AUTOMATIC_DISCOVERY_RANGE,
ROS_DOMAIN_ID), like the tests. ``--quick`` only checks that it runs (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "peers"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

WARMUP_S = 4.0  # results before this (after the first frame) are left out: windows fill, DDS discovery settles


def loopback_only() -> None:
    """This process and its children: ROS discovery on localhost, a domain of this run's own (before rclpy)."""
    os.environ.pop("ROS_STATIC_PEERS", None)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)


def use_large_image_profile(work: Path) -> Path:
    """docs/fastdds_large_images.xml for this process and its children, its UDP transport kept on loopback (the
    file itself leaves the robot's network alone; the bench may only talk to 127.0.0.1)."""
    text = (REPO / "docs" / "fastdds_large_images.xml").read_text()
    udp = "<type>UDPv4</type>"
    if text.count(udp) != 1:
        raise SystemExit(f"error: docs/fastdds_large_images.xml: expected one {udp} transport to keep on loopback")
    text = text.replace(udp, udp + "\n      <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>")
    path = work / "fastdds_large_images.xml"
    path.write_text(text)
    os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
    return path


def footage(topics: int, frames: int, width: int, height: int) -> List[List[np.ndarray]]:
    """``frames`` BGR frames per topic, each topic its own synthetic scenes (looped by the players)."""
    import cv2

    from aknet_edge.synthetic import iter_long_video

    out = []
    for i in range(topics):
        got: List[np.ndarray] = []
        while len(got) < frames:
            _, it = iter_long_video(200 + i + len(got), 4, 15.0, 112)
            got += [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), (width, height), interpolation=cv2.INTER_LINEAR)
                    for _, f in it]
        out.append(got[:frames])
    return out


def _pcts(ms: List[float]) -> Dict[str, float]:
    if not ms:
        return {"p50": float("nan"), "p95": float("nan")}
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))}


# --------------------------------------------------------------------------- the publisher process


def publish(args: argparse.Namespace) -> int:
    """Publish ``--topics`` topics from frame 0 at wall time ``--t0`` for ``--seconds``; prints its counts."""
    from ros2_peer import Peer
    from sensor_msgs.msg import Image

    frames = footage(args.topics, args.loop_frames, args.width, args.height)
    with Peer("aknet_bench_publisher") as peer:
        pubs = [peer.publisher(f"/bench/cam{i}/image_raw", Image, peer.qos(reliable=args.reliable, depth=5))
                for i in range(args.topics)]
        msgs = []
        for per in frames:
            row = []
            for f in per:
                m = Image()
                m.height, m.width, m.encoding, m.step = f.shape[0], f.shape[1], "bgr8", f.shape[1] * 3
                m.header.frame_id = "camera"
                m.data = f.tobytes()
                row.append(m)
            msgs.append(row)
        deadline = time.monotonic() + 30
        while any(p.get_subscription_count() < 1 for p in pubs) and time.monotonic() < deadline:
            time.sleep(0.05)
        sent, late = 0, 0
        n = int(args.seconds * args.fps)
        for i in range(n):
            due = args.t0 + i / args.fps
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.5 / args.fps:
                late += 1
            sec, nsec = divmod(int(round(due * 1e9)), 10**9)
            for row, pub in zip(msgs, pubs):
                m = row[i % len(row)]
                m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
                pub.publish(m)
                sent += 1
        print(json.dumps({"sent": sent, "late_frames": late}), flush=True)
    return 0


# --------------------------------------------------------------------------- the node


def node_run(args: argparse.Namespace, pkg: Path, work: Path) -> Dict[str, Any]:
    from ros2_peer import NodeProcess, Peer, wait_ready
    from std_msgs.msg import String

    topics = [f"/bench/cam{i}/image_raw" for i in range(args.topics)]
    params = {"package": str(pkg), "image_topics": topics, "reliable": args.reliable}
    with Peer("aknet_bench") as peer, NodeProcess(params, work) as node:
        arrivals = peer.collect("/aknet/results", String, convert=lambda m: (time.time(), json.loads(m.data)))
        diag = peer.diagnostics()
        wait_ready(peer, diag, node)
        t0 = time.time() + 3.0
        pub = subprocess.Popen([sys.executable, __file__, "--publish", "--t0", repr(t0), *_common(args)],
                               cwd=str(REPO), stdout=subprocess.PIPE, text=True)
        try:
            out, _ = pub.communicate(timeout=args.seconds + 120)
        except subprocess.TimeoutExpired:
            pub.kill()
            raise
        time.sleep(1.0)  # the last windows
        last = diag.snapshot()[-1]
        assert node.stop() == 0, node.log[-3000:]
    counts = json.loads(out.strip().splitlines()[-1])
    lat, n = [], 0
    start, end = t0 + WARMUP_S, t0 + args.seconds
    for arrived, rec in arrivals.snapshot():
        g = rec["timestamp"]
        if not start <= g <= end:
            continue
        n += 1
        done = t0 + math.ceil((g - t0) * args.fps - 1e-6) / args.fps  # the frame that completed the window
        lat.append((arrived - done) * 1e3)
    streams = {k: v for k, v in last.items() if ": stream " in k}
    return {"results_per_s": n / (end - start), "latency_ms": _pcts(lat), "published": counts,
            "frames": sum(int(v["values"]["frames"]) for v in streams.values()),
            "dropped": sum(int(v["values"]["dropped"]) for v in streams.values()),
            "received": sum(int(v["values"]["received"]) for v in streams.values()),
            "diagnostics": {k: (v["level"], v["message"]) for k, v in last.items()}}


# --------------------------------------------------------------------------- in process


def in_process_run(args: argparse.Namespace, pkg: Path) -> Dict[str, Any]:
    from aknet_edge.runtime import MultiRecognizer
    from aknet_edge.runtime.sources import ArraySource

    frames = footage(args.topics, args.loop_frames, args.width, args.height)
    n_frames = int(args.seconds * args.fps)
    lat: List[float] = []
    times: List[float] = []

    def on_result(r: Any) -> None:
        times.append(r.timestamp)
        if r.timestamp >= WARMUP_S:
            lat.append(r.latency_ms)

    sources = {f"cam{i}": ArraySource(f, fps=args.fps, color="BGR", speed=1.0,
                                      repeat=math.ceil(n_frames / len(f)))
               for i, f in enumerate(frames)}
    from aknet_edge.runtime.sources import EndOfStream

    with MultiRecognizer(pkg, sources, on_result=on_result) as rec:
        t_end = time.monotonic() + args.seconds + 5.0
        while time.monotonic() < t_end:
            try:
                rec.next_result(timeout=0.2)
            except EndOfStream:  # every stream played its frames
                break
        stats = rec.stats()
    n = sum(1 for t in times if WARMUP_S <= t <= args.seconds)
    return {"results_per_s": n / (args.seconds - WARMUP_S), "latency_ms": _pcts(lat), "frames": stats.frames,
            "dropped": stats.dropped}


def _common(args: argparse.Namespace) -> List[str]:
    return [*([] if args.reliable else ["--best-effort"]), "--topics", str(args.topics), "--fps", str(args.fps),
            "--width", str(args.width), "--height", str(args.height), "--seconds", str(args.seconds),
            "--loop-frames", str(args.loop_frames)]


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", help="model package (default: the demo package, as python -m aknet_edge.run finds "
                                      "it)")
    ap.add_argument("--topics", type=int, default=4)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seconds", type=float, default=20.0, help="publishing time of each run")
    ap.add_argument("--loop-frames", type=int, default=60, help="distinct frames per topic, looped")
    ap.add_argument("--best-effort", dest="reliable", action="store_false",
                    help="publish and subscribe best effort (the node's default QoS; with Fast DDS's defaults "
                         "large images between processes then lose fragments, see the README)")
    ap.add_argument("--large-image-profile", action="store_true",
                    help="run the ROS processes with docs/fastdds_large_images.xml (shared-memory segments large enough "
                         "for raw images; its UDP kept on loopback here)")
    ap.add_argument("--quick", action="store_true", help="tiny run: checks the script only")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "ros2.json"))
    ap.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)  # the publisher process
    ap.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.loop_frames = WARMUP_S + 3.0, 10
    if args.publish:  # the bench's child: in the bench's domain (tests/peers/ros2_peer.py checks the settings)
        return publish(args)
    loopback_only()
    from timing import machine_name

    from aknet_edge.run import demo_package

    pkg = Path(args.package) if args.package else demo_package()
    with tempfile.TemporaryDirectory(prefix="aknet_ros2_bench_") as work:
        if args.large_image_profile:
            print(f"Fast DDS profile: {use_large_image_profile(Path(work))}")
        node = node_run(args, pkg, Path(work))
    local = in_process_run(args, pkg)
    ratio = node["results_per_s"] / local["results_per_s"] if local["results_per_s"] else float("nan")
    added = node["latency_ms"]["p50"] - local["latency_ms"]["p50"]
    interval = 1e3 / args.fps
    rows = [("node (ROS 2)", node), ("in process", local)]
    print(f"\n{args.topics} topics of {args.width}x{args.height} bgr8 at {args.fps:g} fps, {args.seconds:g} s each "
          f"({WARMUP_S:g} s warm-up left out); {machine_name()}")
    print("| path | results/s | frames recognised | frames dropped | latency p50 ms | latency p95 ms |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['results_per_s']:.2f} | {r['frames']} | {r['dropped']} | {r['latency_ms']['p50']:.1f} "
              f"| {r['latency_ms']['p95']:.1f} |")
    ok_rate, ok_lat = ratio >= 0.9, added < interval
    print(f"\nnode / in-process results per second: {ratio:.3f} (target >= 0.9: {'met' if ok_rate else 'NOT met'}); "
          f"added latency p50: {added:.1f} ms (target < {interval:.1f} ms: {'met' if ok_lat else 'NOT met'}); "
          f"published {node['published']}")
    if not args.quick:
        from aknet_edge.io_utils import atomic_write_text

        result = {"machine": machine_name(), "reliable": args.reliable,
                  "fastdds_profile": "docs/fastdds_large_images.xml" if args.large_image_profile else None,
                  "topics": args.topics, "fps": args.fps, "size": [args.width, args.height],
                  "seconds": args.seconds, "warmup_s": WARMUP_S, "node": node, "in_process": local,
                  "throughput_ratio": ratio, "added_latency_p50_ms": added, "frame_interval_ms": interval,
                  "targets_met": {"throughput": ok_rate, "latency": ok_lat},
                  "command": "python bench/ros2_bench.py " + " ".join(sys.argv[1:])}
        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
