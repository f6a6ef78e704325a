"""Module paths to ONNX graph nodes: the one place that knows how the exporter names nodes.

A model declares what reduced precision keeps in float as module paths
(``model.float_modules("int8")``, as in ``named_modules()``); quantization
works on node names. The TorchScript exporter (``onnx_export`` pins
``dynamo=False``) names a node ``/<scope>/.../<Op>_<n>`` with one scope per
module on the call path, and ``lower`` keeps those names (inlined function
bodies get ``/<custom node>/...``; folded constants disappear). A scope is the
module's attribute name, or, where that is a number (a Sequential's child),
the name back to the last non-numeric atom (``layer2.0``, ``downsample.0``);
a module called again in the same parent gets ``_1``, ``_2``... appended.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import onnx

from aknet_edge.errors import ConfigError


def module_scopes(path: str) -> list[str]:
    """``encoder.layer2.0.conv1`` -> ``["encoder", "layer2", "layer2.0", "conv1"]``, the exporter's scope names."""
    atoms = path.split(".")
    if not path or any(not a or "/" in a for a in atoms) or atoms[0].isnumeric():
        raise ConfigError(f"module path {path!r}: expected a dotted name from named_modules(), e.g. 'encoder.layer2'")
    scopes = []
    for i, atom in enumerate(atoms):
        start = i
        while start > 0 and atoms[start].isnumeric():
            start -= 1
        scopes.append(".".join(atoms[start : i + 1]))
    return scopes


def module_pattern(path: str) -> re.Pattern[str]:
    """The node names a module's forward makes: its scopes in order, each maybe called again (``_<n>``)."""
    return re.compile("/" + "/".join(re.escape(s) + r"(?:_\d+)?" for s in module_scopes(path)) + "/")


def nodes_of_modules(graph: onnx.ModelProto, paths: Iterable[str]) -> list[str]:
    """Names of the nodes of ``graph`` inside any of the modules ``paths``, in graph order.

    Raises ConfigError when a path matches no node: a declaration that names
    a renamed attribute must fail the build rather than quantize the module
    it was meant to keep in float. Matching is by name prefix, so a module's
    children are included; a call of a module named ``x_1`` would also count
    as a second call of ``x`` (a wider float set, never a narrower one).
    """
    patterns = {p: module_pattern(p) for p in paths}
    names = [n.name for n in graph.graph.node]
    for path, pat in patterns.items():
        if not any(pat.match(name) for name in names):
            top = sorted({name.split("/")[1] for name in names if name.count("/") > 1})
            raise ConfigError(
                f"module {path!r} matches no node of graph {graph.graph.name!r} (names starting "
                f"{'/' + '/'.join(module_scopes(path)) + '/'!r}); its top-level scopes are {top}. "
                "Fix the declaration in aknet_edge/model.py (float_modules_for) after renaming a module, "
                "or export with the TorchScript exporter, which names nodes after modules"
            )
    return [name for name in names if any(pat.match(name) for pat in patterns.values())]
