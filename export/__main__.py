"""``python -m aknet_edge.export``: export to ONNX, lower for a target, or check a graph.

    python -m aknet_edge.export --out demo.onnx                       # bundled demo, custom-node graph
    python -m aknet_edge.export --preset r50-paper --target tensorrt-8.5 --out r50.onnx
    python -m aknet_edge.export --split out_dir/                      # frame_encoder.onnx + clip_head.onnx
    python -m aknet_edge.export --check --target tensorrt-10.3 model.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aknet_edge.cli_common import CliParser, add_model_args, config_from_args, quiet_onnxruntime, run_cli
from aknet_edge.errors import AknetError, ConfigError

from .targets import TARGETS


class ExportCheckFailed(AknetError):
    """The compatibility check found errors."""


def _load_model(args: argparse.Namespace):
    from aknet_edge.checkpoint import DEMO_WEIGHTS, load_checkpoint
    from aknet_edge.model import build_model

    if args.checkpoint:
        return load_checkpoint(args.checkpoint)
    if args.config or args.preset or args.overrides or args.arch:
        return build_model(config_from_args(args)).eval()  # untrained: for graph and cost work
    return load_checkpoint(DEMO_WEIGHTS)


def main(argv: list[str] | None = None) -> int:
    p = CliParser(prog="python -m aknet_edge.export", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_model_args(p, default_preset=None)
    p.add_argument("--checkpoint", help="safetensors checkpoint (default: the bundled demo model)")
    p.add_argument("--target", choices=tuple(TARGETS), help="lower for this target (default: custom-node graph)")
    p.add_argument("--plugins", nargs="*", default=[], help="custom op types the TensorRT target has plugins for")
    p.add_argument("--out", help="ONNX file to write")
    p.add_argument("--split", metavar="DIR", help="also write frame_encoder.onnx and clip_head.onnx here")
    p.add_argument("--check", metavar="MODEL", nargs="?", const="", help="check an ONNX file against --target")
    args = p.parse_args(argv)
    quiet_onnxruntime()

    if args.check is not None:
        return _check(args)
    if not args.out and not args.split:
        raise ConfigError("nothing to do: give --out FILE.onnx and/or --split DIR (or --check MODEL.onnx)")
    _check_outputs(args)
    model = _load_model(args)
    from .lower import lower
    from .onnx_export import save, to_onnx, to_split_onnx

    if args.out:
        graph = to_onnx(model)
        if args.target:
            graph = lower(graph, args.target, args.plugins)
        path = save(graph, args.out)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {len(graph.graph.node)} nodes, "
              f"target {args.target or 'custom-node graph'})")
    if args.split:
        enc, head = to_split_onnx(model)
        if args.target:
            enc, head = lower(enc, args.target), lower(head, args.target, args.plugins)
        out = Path(args.split)
        print(f"wrote {save(enc, out / 'frame_encoder.onnx')} and {save(head, out / 'clip_head.onnx')}")
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse outputs that cannot be written before the model is loaded and traced."""
    from aknet_edge.io_utils import check_writable

    if args.out:
        check_writable(args.out, "--out")
    if args.split:
        split = Path(args.split)
        if split.exists() and not split.is_dir():
            raise ConfigError(f"--split {split}: is a file; give a folder for frame_encoder.onnx and clip_head.onnx")
        for name in ("frame_encoder.onnx", "clip_head.onnx"):
            check_writable(split / name, "--split")


def _check(args: argparse.Namespace) -> int:
    import onnx

    from .check import check, errors

    if not args.check or not args.target:
        raise ConfigError("--check needs a model path and --target, e.g. --check model.onnx --target tensorrt-8.5")
    try:
        model = onnx.load(args.check)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for corrupt files
        raise ConfigError(f"cannot read {args.check} as ONNX ({exc})") from None
    findings = check(model, args.target, tuple(args.plugins))
    if not findings:
        print(f"{args.check}: clean for {args.target}")
        return 0
    for f in findings:
        print(f)
    n_err = len(errors(findings))
    print(f"{len(findings)} finding(s), {n_err} error(s) for {args.target}", file=sys.stderr)
    return 1 if n_err else 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
