"""Soak: ``python -m aknet_edge.run`` on an RTSP camera that is cut every few minutes, for half an hour or more.

The camera is Debian's GStreamer RTSP server (``tests/peers/rtsp_server.py``, run by the system
Python, which has python3-gi and gir1.2-gst-rtsp-server-1.0). Every ``--cut-every`` seconds the
server is killed (SIGKILL, as a camera losing power) and restarted ``--cut-s`` later on the same
port. The run CLI writes JSON Lines and an output video the whole time. Checked at the end:

* reconnects equal cuts (the ``stream`` lost/restored lines and the final stats);
* every JSON line is valid;
* no growth in threads or file descriptors, RSS growth under 5% (from the first sample after warm-up);
* restore -> first result, each time (wall clock from the server listening again to the first
  result line after the ``restored`` line).

Prints a table and writes ``bench/results/soak.json``.

    python bench/soak.py                     # 30 min, a 20 s cut every 5 min
    python bench/soak.py --minutes 3 --cut-every 60 --cut-s 5    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "peers" / "rtsp_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Camera:
    """The RTSP server as a subprocess that can be killed and restarted on the same port."""

    def __init__(self, python: str, port: int) -> None:
        self.python, self.port, self.proc = python, port, None

    def start(self) -> float:
        self.proc = subprocess.Popen([self.python, str(SERVER), "--port", str(self.port), "--fps", "15"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                threading.Thread(target=self._drain, daemon=True).start()
                return time.monotonic()
        raise SystemExit("the RTSP server did not start (needs python3-gi and gir1.2-gst-rtsp-server-1.0)")

    def _drain(self) -> None:
        for _ in self.proc.stdout:
            pass

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def proc_sample(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")))
    return {"t": time.monotonic(), "rss_mb": rss_kb / 1024, "threads": len(os.listdir(f"/proc/{pid}/task")),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def read_lines(path: Path) -> list:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--cut-every", type=float, default=300.0, help="seconds between cuts")
    p.add_argument("--cut-s", type=float, default=20.0, help="seconds the camera stays down")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the first resource sample counts")
    p.add_argument("--package", help="model package (default: the demo package)")
    p.add_argument("--python", default="/usr/bin/python3", help="a Python with GStreamer's introspection")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "soak.json"))
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    from aknet_edge.run import demo_package

    pkg = args.package or str(demo_package())
    work = Path(tempfile.mkdtemp(prefix="aknet-soak-"))
    jsonl, video = work / "out.jsonl", work / "out.avi"
    cam = Camera(args.python, free_port())
    cam.start()
    cli = subprocess.Popen(
        [sys.executable, "-m", "aknet_edge.run", f"rtsp://127.0.0.1:{cam.port}/cam", "--package", pkg,
         "--jsonl", str(jsonl), "--output-video", str(video), "--source-option", "reconnect_max_s=2",
         "--stats", "60"], cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=open(work / "stderr.log", "w"))
    start = time.monotonic()
    end = start + args.minutes * 60
    samples, cuts, restores = [], [], []
    next_cut = start + args.cut_every
    try:
        while time.monotonic() < end and cli.poll() is None:
            now = time.monotonic()
            if now >= next_cut:
                cam.kill()
                cut_at = time.monotonic()
                time.sleep(args.cut_s)
                seen = len(read_lines(jsonl))
                back = cam.start()
                cuts.append({"cut_at_s": round(cut_at - start, 1), "down_s": round(back - cut_at, 1)})
                restored, first = False, None
                while time.monotonic() < back + 60 and first is None:
                    for ln in read_lines(jsonl)[seen:]:
                        rec = json.loads(ln)
                        restored = restored or (rec.get("type") == "stream" and rec.get("state") == "restored")
                        if restored and rec.get("type") == "result":
                            first = time.monotonic() - back
                            break
                    time.sleep(0.1)
                restores.append(None if first is None else round(first, 2))
                next_cut += args.cut_every
            if now - start >= args.warmup:
                samples.append(proc_sample(cli.pid))
            time.sleep(1.0)
    finally:
        if cli.poll() is None:
            cli.send_signal(signal.SIGINT)
            cli.wait(timeout=60)
        cam.kill()
    lines = read_lines(jsonl)
    bad = 0
    records = []
    for ln in lines:
        try:
            records.append(json.loads(ln))
        except ValueError:
            bad += 1
    lost = sum(1 for r in records if r.get("type") == "stream" and r.get("state") == "lost")
    back = sum(1 for r in records if r.get("type") == "stream" and r.get("state") == "restored")
    results = sum(1 for r in records if r.get("type") == "result")
    first, last = samples[0], samples[-1]
    rss_growth = 100 * (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"]
    row = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "minutes": round((time.monotonic() - start) / 60, 1),
        "cuts": len(cuts), "lost_lines": lost, "restored_lines": back, "results": results, "json_lines": len(lines),
        "invalid_json_lines": bad, "rss_mb_first": round(first["rss_mb"], 1), "rss_mb_last": round(last["rss_mb"], 1),
        "rss_growth_pct": round(rss_growth, 2), "threads_min_max": [min(s["threads"] for s in samples),
                                                                   max(s["threads"] for s in samples)],
        "fds_min_max": [min(s["fds"] for s in samples), max(s["fds"] for s in samples)],
        "restore_to_first_result_s": restores, "cuts_detail": cuts, "exit_code": cli.returncode,
        "video_bytes": video.stat().st_size if video.exists() else 0,
        "command": " ".join(["python"] + sys.argv),
    }
    print(f"soak: {row['minutes']} min on rtsp://127.0.0.1 (GStreamer RTSP server), {row['machine']}")
    print("| cuts | lost / restored lines | results | JSON lines (invalid) | RSS MB first -> last (growth) | "
          "threads min-max | fds min-max | restore -> first result s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {row['cuts']} | {lost} / {back} | {results} | {len(lines)} ({bad}) | {row['rss_mb_first']} -> "
          f"{row['rss_mb_last']} ({row['rss_growth_pct']:+.2f}%) | {row['threads_min_max'][0]}-{row['threads_min_max'][1]}"
          f" | {row['fds_min_max'][0]}-{row['fds_min_max'][1]} | {', '.join(str(r) for r in restores)} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(row, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    ok = (bad == 0 and lost == len(cuts) == back and rss_growth < 5 and None not in restores
          and row["threads_min_max"][1] - row["threads_min_max"][0] <= 2 and row["fds_min_max"][1] - row["fds_min_max"][0] <= 4)
    print("all checks met" if ok else "NOT all checks met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
