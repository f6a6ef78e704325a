"""Extract the names a TensorRT Python bindings wheel defines, for a static check.

Why: TensorRT cannot be imported without NVIDIA's native libraries, so the
tests cannot ask a real ``tensorrt`` module whether ``BuilderFlag.FP16`` still
exists. The bindings wheels on PyPI (``tensorrt-cu12-bindings``,
``tensorrt-cu13-bindings``) do hold the compiled pybind11 module, and every
class, method, property and enum value it registers is a C string in it. This
script downloads one wheel, reads those strings and writes
``<wheel version>.txt`` beside itself: one identifier per line, sorted.

How the strings are found (x86_64 ELF only, which is all we need):

* every NUL-terminated string in ``.rodata`` that is a whole identifier;
* every string a ``lea reg, [rip+disp32]`` in ``.text`` points at, and every
  ``R_X86_64_RELATIVE`` relocation target in ``.rodata``. This matters: the
  linker merges a string into the tail of a longer one (``INT8`` into
  ``UINT8``, ``Runtime`` into ``IRuntime``), so those names only exist as a
  pointer into the middle of another string;
* the module-level names the wheel's Python ``__init__.py`` defines
  (``nptype``, ``volume``, ``__version__``).

Docstrings are not split into words, so a removed name that is merely
mentioned in prose (``max_workspace_size`` in ICudaEngine's docstring) does not
count as present. The list is a flat set: it cannot tell ``DataType.INT8``
from ``BuilderFlag.INT8`` (see ``--enum-run`` to inspect one enum's values).

Usage::

    python tests/data/trt_names/extract.py 10.3.0 11.4.0.106
    python tests/data/trt_names/extract.py --wheel some.whl
    python tests/data/trt_names/extract.py 11.4.0.106 --enum-run GPU_FALLBACK
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import logging
import os
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger("trt_names.extract")

HERE = Path(__file__).resolve().parent
DEFAULT_PACKAGE = "tensorrt-cu12-bindings"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
PYTHON_VERSION = "3.11"
MIN_LEN = 3
MAX_FILE_BYTES = 1_500_000

_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
# lea r64, [rip+disp32]: REX.W (0x48..0x4f), opcode 0x8d, ModRM mod=00 rm=101.
_LEA_RIP = re.compile(rb"[\x48-\x4f]\x8d[\x05\x0d\x15\x1d\x25\x2d\x35\x3d]", re.DOTALL)
_R_X86_64_RELATIVE = 8
_EM_X86_64 = 62


class ExtractError(RuntimeError):
    """The wheel or its compiled module is not what this script can read."""


def download_wheel(package: str, version: str, dest: Path) -> Path:
    """Download the cp311 x86_64 manylinux wheel of ``package==version`` with pip."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", PYTHON_VERSION, "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    cmd.append(f"{package}=={version}")
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ExtractError(f"pip download {package}=={version} failed:\n{proc.stderr[-2000:]}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ExtractError(f"pip download {package}=={version} produced no wheel in {dest}")
    return wheels[0]


def _sections(elf: bytes) -> dict[str, dict[str, int]]:
    """Section headers of a little-endian ELF64 file, by name."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ExtractError("not a little-endian 64-bit ELF file")
    (machine,) = struct.unpack_from("<H", elf, 0x12)
    if machine != _EM_X86_64:
        raise ExtractError(f"ELF machine {machine} is not x86_64: download the x86_64 wheel")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    names_off = headers[shstrndx][4]
    out: dict[str, dict[str, int]] = {}
    for h in headers:
        start = names_off + h[0]
        name = elf[start:elf.index(b"\0", start)].decode("ascii", "replace")
        out[name] = {"addr": h[3], "off": h[4], "size": h[5]}
    return out


def identifiers_in_elf(elf: bytes, min_len: int = MIN_LEN) -> set[str]:
    """Identifier-only C strings of ``.rodata``, including tail-merged ones."""
    sec = _sections(elf)
    for needed in (".rodata", ".text"):
        if needed not in sec:
            raise ExtractError(f"no {needed} section in the compiled module")
    ro_sec, tx_sec = sec[".rodata"], sec[".text"]
    ro = elf[ro_sec["off"]:ro_sec["off"] + ro_sec["size"]]
    text = elf[tx_sec["off"]:tx_sec["off"] + tx_sec["size"]]

    starts = {0} | {m.end() for m in re.finditer(rb"\0", ro)}
    for m in _LEA_RIP.finditer(text):
        (disp,) = struct.unpack_from("<i", text, m.end())
        target = tx_sec["addr"] + m.start() + 7 + disp - ro_sec["addr"]
        if 0 <= target < len(ro):
            starts.add(target)
    rela = sec.get(".rela.dyn")
    if rela is not None:
        for k in range(rela["size"] // 24):
            _off, info, addend = struct.unpack_from("<QQq", elf, rela["off"] + 24 * k)
            if info & 0xFFFFFFFF == _R_X86_64_RELATIVE:
                target = addend - ro_sec["addr"]
                if 0 <= target < len(ro):
                    starts.add(target)

    names: set[str] = set()
    for start in starts:
        end = ro.find(b"\0", start)
        raw = ro[start:end if end >= 0 else len(ro)]
        if len(raw) >= min_len and _IDENT.fullmatch(raw):
            names.add(raw.decode("ascii"))
    return names


def identifiers_in_python(source: str) -> set[str]:
    """Module-level names a Python file defines (``nptype``, ``__version__``, ...)."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                elif isinstance(target, ast.Attribute):  # Logger.Severity = ...
                    names.add(target.attr)
    return names


def names_from_wheel(wheel: Path) -> tuple[set[str], str]:
    """All names of one bindings wheel, and the name of its compiled module."""
    with zipfile.ZipFile(wheel) as zf:
        so_members = [n for n in zf.namelist() if re.search(r"/tensorrt[^/]*\.so$", n)]
        if len(so_members) != 1:
            raise ExtractError(f"expected one compiled tensorrt module in {wheel.name}, found {so_members}")
        names = identifiers_in_elf(zf.read(so_members[0]))
        package_dir = so_members[0].rsplit("/", 1)[0]
        init = f"{package_dir}/__init__.py"
        if init in zf.namelist():
            names |= {n for n in identifiers_in_python(zf.read(init).decode("utf-8")) if len(n) >= MIN_LEN}
    return names, so_members[0]


def _api_like(name: str) -> bool:
    """Tighter filter, used only when a list would be too large."""
    return bool(re.fullmatch(r"[A-Z][A-Za-z0-9]+|[a-z_][a-z0-9_]*|[A-Z][A-Z0-9_]*", name))


def write_list(wheel: Path, out_dir: Path) -> Path:
    """Write ``<version>.txt`` for ``wheel`` into ``out_dir`` and return its path."""
    names, member = names_from_wheel(wheel)
    parts = wheel.name.split("-")
    package, version = parts[0].replace("_", "-"), parts[1]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    header = [
        f"# TensorRT Python binding names of {package} {version}",
        f"# wheel: {wheel.name} (sha256 {digest})",
        f"# module: {member}; made by tests/data/trt_names/extract.py; one identifier per line",
    ]
    body = sorted(names)
    text = "\n".join(header + body) + "\n"
    if len(text.encode()) > MAX_FILE_BYTES:
        body = sorted(n for n in names if _api_like(n))
        text = "\n".join(header + body) + "\n"
    out = out_dir / f"{version}.txt"
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    log.info("wrote %s: %d names, %d bytes", out, len(body), out.stat().st_size)
    return out


def enum_run(wheel: Path, anchor: str) -> list[str]:
    """UPPER_CASE names registered next to ``anchor`` in code order (one enum's values).

    pybind11 registers ``.value("NAME", ..., doc)`` calls one after another, so
    the names around a known value (``GPU_FALLBACK``) are its enum's members.
    A diagnostic for questions the flat list cannot answer, e.g. whether
    ``BuilderFlag.INT8`` survived (``INT8`` is also a ``DataType`` value).
    """
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if re.search(r"/tensorrt[^/]*\.so$", n))
        elf = zf.read(member)
    sec = _sections(elf)
    ro_sec, tx_sec = sec[".rodata"], sec[".text"]
    ro = elf[ro_sec["off"]:ro_sec["off"] + ro_sec["size"]]
    text = elf[tx_sec["off"]:tx_sec["off"] + tx_sec["size"]]
    seq: list[str | None] = []  # identifiers in code order; None for docstrings/other data
    for m in _LEA_RIP.finditer(text):
        (disp,) = struct.unpack_from("<i", text, m.end())
        target = tx_sec["addr"] + m.start() + 7 + disp - ro_sec["addr"]
        if 0 <= target < len(ro):
            raw = ro[target:ro.find(b"\0", target)]
            seq.append(raw.decode("ascii") if _IDENT.fullmatch(raw or b"-") else None)
    if anchor not in seq:
        return []
    i = seq.index(anchor)
    upper = re.compile(r"[A-Z][A-Z0-9_]*")

    def part_of_run(item: str | None) -> bool:
        return item is None or bool(upper.fullmatch(item))

    lo, hi = i, i
    while lo > 0 and part_of_run(seq[lo - 1]):
        lo -= 1
    while hi + 1 < len(seq) and part_of_run(seq[hi + 1]):
        hi += 1
    return [s for s in seq[lo:hi + 1] if s is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", help="bindings wheel versions, e.g. 10.3.0 11.4.0.106")
    parser.add_argument("--package", default=DEFAULT_PACKAGE, help=f"PyPI package (default {DEFAULT_PACKAGE})")
    parser.add_argument("--wheel", type=Path, action="append", default=[], help="use a local wheel instead")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: beside this script)")
    parser.add_argument("--enum-run", metavar="VALUE", help="print the enum values registered around VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.versions and not args.wheel:
        parser.error("give at least one version or --wheel")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wheels = list(args.wheel)
            for version in args.versions:
                dest = Path(tmp) / version
                dest.mkdir()
                wheels.append(download_wheel(args.package, version, dest))
            for wheel in wheels:
                if args.enum_run:
                    log.info("%s: %s", wheel.name, " ".join(enum_run(wheel, args.enum_run)) or "(not found)")
                else:
                    write_list(wheel, args.out)
    except ExtractError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
