"""The recogniser as a ROS 2 node (``python -m aknet_edge.ros2``): image topics in; results, events, diagnostics
and annotated images out.

:mod:`.params` (the parameters, without rclpy), :mod:`.source` (a source fed by a subscription, without rclpy),
:mod:`.sink` (the outputs as messages), :mod:`.node` (the node itself; needs rclpy and the message packages, from
the robot's ROS 2 install: they are never pip dependencies of aknet_edge). Nothing here imports rclpy until the
node runs.
"""

from __future__ import annotations

__all__: list = []
