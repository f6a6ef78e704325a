"""Graph roles and I/O names: the one definition export, build, runtime and benches share.

A package holds up to three graphs ("roles"): the whole-clip graph, and for
streaming the frame encoder and the clip head. Their input, output and
dynamic-axis names are part of the package contract, so they live here, in a
module that imports nothing (torch-free and numpy-free: the device side
imports it too).
"""

from __future__ import annotations

# roles: which graph a package variant is
CLIP = "clip"  # whole clip (B, T, 3, S, S) -> logits, keypoints, keypoint_scores
FRAME_ENCODER = "frame_encoder"  # one frame (+ online-shift state) -> feature map (+ new state)
CLIP_HEAD = "clip_head"  # T cached feature maps -> logits, keypoints, keypoint_scores
ROLES = (CLIP, FRAME_ENCODER, CLIP_HEAD)
SPLIT_ROLES = (FRAME_ENCODER, CLIP_HEAD)
DEFAULT_ROLE = CLIP  # a schema-1 variant without "role" is a whole-clip graph

# tensor names
CLIP_INPUT = "clip"
FRAME_INPUT = "frame"
FEATURES = "features"  # the frame encoder's output and the clip head's input
# optional frame-encoder input (int32, one per output row): the row each forked row copies, so exact incremental
# mode batches several cameras' fresh chains in one call (runtime.multistream)
PARENT_ROWS = "parent_rows"
LOGITS = "logits"
KEYPOINTS = "keypoints"
KEYPOINT_SCORES = "keypoint_scores"
CLIP_OUTPUTS = (LOGITS, KEYPOINTS, KEYPOINT_SCORES)  # TSM graphs have only the first

# dynamic axes
BATCH_AXIS = "batch"
FRAMES_AXIS = "frames"  # the frame encoder's frame axis where it carries shift state
ROWS_AXIS = "rows"  # the encoder's feature rows
STATE_INPUT_PREFIX = "shift_state_"
OUTPUT_SUFFIX = "_out"


def state_input(i: int) -> str:
    """Name of the i-th online-shift state input of the frame encoder."""
    return f"{STATE_INPUT_PREFIX}{i}"


def state_output(name: str) -> str:
    """The output that carries an input state to the next call."""
    return f"{name}{OUTPUT_SUFFIX}"


def rows_axis(i: int) -> str:
    """Dynamic axis of state i: its own row count, so a state may fork new rows (exact incremental mode)."""
    return f"{ROWS_AXIS}_{i}"


def is_state_input(name: str) -> bool:
    return name.startswith(STATE_INPUT_PREFIX) and not name.endswith(OUTPUT_SUFFIX)


def is_rows_axis(dim: object) -> bool:
    """Whether a recorded dim is a per-state row axis (packages whose encoder forks chains)."""
    return str(dim).startswith(ROWS_AXIS + "_")
