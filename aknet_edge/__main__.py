"""``python -m aknet_edge`` is the build command (``python -m aknet_edge.build``)."""

from .build import main
from .cli_common import run_cli

raise SystemExit(run_cli(main))
