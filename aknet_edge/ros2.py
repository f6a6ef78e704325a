"""``python -m aknet_edge.ros2 [--ros-args ...]``: the recogniser as a ROS 2 node (default name ``aknet``).

ROS conventions throughout: parameters, remapping and parameter files come after ``--ros-args``
(``-p enter:=0.6``, ``-r __node:=front_actions``, ``-r image:=/camera/image_raw``, ``--params-file site.yaml``).
Results go to ``~/results`` and events to ``~/events`` (``std_msgs/String``, one JSON Lines record each),
``/diagnostics`` once a second; see ``aknet_edge.runtime.ros2``. SIGINT and SIGTERM stop it cleanly (exit 0); a
bad parameter is one ``error:`` line and exit 2. Needs the robot's rclpy (a venv made with
``--system-site-packages`` after sourcing ROS 2); ``--help`` works without it.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from .cli_common import UsageError, run_cli
from .run import demo_package

PROG = "python -m aknet_edge.ros2"


def help_text() -> str:
    from aknet_edge.runtime.ros2.params import help_text as params_help

    return (f"usage: {PROG} [-h] [--ros-args [-p NAME:=VALUE ...] [-r FROM:=TO ...] [--params-file FILE] "
            "[--log-level LEVEL]]\n\n" + __doc__.split("\n\n")[0].split(": ", 1)[1] + "\n\n"
            "options:\n"
            "  -h, --help            show this help and exit\n"
            "  --ros-args ...        ROS arguments: -p NAME:=VALUE sets a parameter, -r FROM:=TO remaps a name\n"
            "                        (-r __node:=NAME renames the node, -r image:=/camera/image_raw the default\n"
            "                        topic), --params-file FILE reads a YAML parameter file, --log-level LEVEL\n\n"
            "parameters (live: ros2 param set changes it from the next window on; the others are read only):\n"
            + params_help() + "\n\n"
            "topics: ~/results and ~/events (std_msgs/String: one JSON Lines record each; events reliable and\n"
            "transient-local), /diagnostics (diagnostic_msgs/DiagnosticArray, about 1 Hz), ~/<topic>/annotated\n"
            "(sensor_msgs/Image bgr8, with annotated:=true)\n")


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    ours = argv[:cut]
    if "-h" in ours or "--help" in ours:
        print(help_text())
        return 0
    if ours:
        raise UsageError(f"unexpected arguments {' '.join(ours)}: give parameters after --ros-args, e.g. "
                         f"{PROG} --ros-args -p image_topics:=\"['/camera/image_raw']\" (see {PROG} --help)")
    from aknet_edge.runtime.ros2.node import run_node

    return run_node(argv, default_package=demo_package)


if __name__ == "__main__":
    sys.exit(run_cli(main))
