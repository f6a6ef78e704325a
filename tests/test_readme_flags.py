"""The README cites only flags that exist: every ``--flag`` it mentions for a command-line tool of this project is
one that tool's parser accepts.

How a mention is tied to its tool, line by line (code blocks and prose alike):

* a command -- ``python -m aknet_edge.X ...`` (any ``python``/``python3``/``.venv/bin/python``), ``python -m
  aknet_edge`` (the build) or ``python bench/X.py ...`` -- owns the flags that follow it, up to the end of its
  code span, a comment, ``&&``, ``;`` or ``|``; a short form in prose (`` `build --eval` ``) likewise; a flag
  in prose after a command on the same line is that command's. These must be flags of that very tool;
* a flag alone in prose (`` `--preview-host ADDR` ``) names no tool for sure (a paragraph of the runtime's
  section may cite the build's ``--max-streams``), so it must be a flag of some tool of this project (every
  ``python -m aknet_edge.X`` and the bench scripts the README names); the report names the section's tool;
* flags of other programs (pip, pytest, docker, tritonserver, python -m venv, ...) are not checked.

Each tool's flags come from its ``parser()`` where it has one (``run`` and ``build``: hidden ``--no-x`` forms
included), else from its ``--help``. Tools whose flags others add at the same time (MQTT, metrics, ROS 2, Triton,
preview...) need nothing here: the test reads the parsers as they are. It reports every unknown flag with its
README line.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

MODULES = ("run", "build", "export", "train", "evaluate", "flops")  # python -m aknet_edge.X
WITH_PARSER = {"aknet_edge.run": "aknet_edge.run", "aknet_edge.build": "aknet_edge.build"}  # a parser() function
# python[3] or a venv's python, then -m aknet_edge[.X] or a bench script
_COMMAND = re.compile(r"(?:^|(?<=[\s`(]))(?:\S*/)?python3?\s+(?:-m\s+(aknet_edge(?:\.(\w+))?)\b|(bench/\w+\.py)\b)")
_SHORT = re.compile(r"`(" + "|".join(MODULES) + r")\s+(--[^`]*)`")  # `build --eval` in prose
_FOREIGN = re.compile(r"(?:^|(?<=[\s`(]))(?:\S*/)?(?:pip3?|pytest|docker|tritonserver|gst-launch-1\.0|gst-inspect-1\.0|"
                      r"apt-get|apt|git|bash|sh|lint-imports|polygraphy|trtexec|curl|chromium|"
                      r"python3?\s+-m\s+(?!aknet_edge\b)[\w.]+)\b")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_END = re.compile(r"\s#\s|\s&&\s|\s;\s|\s\|\s")  # where one command ends on a line
# flags of other programs that the README names alone in prose (`--system-site-packages` venv)
FOREIGN_FLAGS = {"--system-site-packages": "python -m venv", "--model-repository": "tritonserver"}


@dataclass(frozen=True)
class Mention:
    line: int  # 1-based README line
    tool: str  # "aknet_edge.run", "bench/soak.py", ...
    flag: str
    text: str  # the README line, for the report


def _tool(match: "re.Match[str]") -> str:
    if match.group(3):
        return match.group(3)
    return "aknet_edge.build" if match.group(2) is None else match.group(1)  # python -m aknet_edge: the build


def _segments(line: str, in_code: bool) -> Iterator[str]:
    """The parts of a line that may hold a command: inline code spans in prose, the whole line in a code block."""
    if in_code:
        yield line
    else:
        yield from re.findall(r"`([^`]+)`", line)


def _commands(segment: str) -> List[Tuple[int, int, Optional[str]]]:
    """(start, end, tool) of every command in ``segment``; tool None for another program's."""
    found = [(m.start(), m.end(), _tool(m)) for m in _COMMAND.finditer(segment)]
    found += [(m.start(), m.end(), None) for m in _FOREIGN.finditer(segment)
              if not any(s <= m.start() < e for s, e, _ in found)]
    found.sort()
    out = []
    for i, (start, body, tool) in enumerate(found):
        nxt = found[i + 1][0] if i + 1 < len(found) else len(segment)
        stop = _END.search(segment, body, nxt)
        out.append((body, stop.start() if stop else nxt, tool))
    return out


def mentions(text: str) -> Tuple[List[Mention], List[Mention]]:
    """(flags tied to a tool, flags alone in prose with their section's tool or "") in a README's text."""
    tied: List[Mention] = []
    loose: List[Mention] = []
    heading_tools: Dict[int, Optional[str]] = {}  # heading level -> the tool it names
    in_code, fence_lang, pending = False, "", ""
    for no, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            fence_lang, pending = (stripped[3:].strip().lower() if in_code else ""), ""
            continue
        if in_code and fence_lang not in ("", "bash", "sh", "shell", "console"):
            continue  # python, json: no command lines
        if in_code and stripped.endswith("\\"):  # a command continued on the next line
            pending += raw.rstrip()[:-1] + " "
            continue
        raw, pending = pending + raw, ""
        if not in_code and re.match(r"#{1,6}\s", stripped):
            level = len(stripped) - len(stripped.lstrip("#"))
            m = _COMMAND.search(stripped)
            heading_tools = {k: v for k, v in heading_tools.items() if k < level}
            heading_tools[level] = _tool(m) if m else None
            continue
        section = next((t for _, t in sorted(heading_tools.items(), reverse=True) if t), None)
        last_tool = None  # the last command named on this line so far
        for segment in _segments(raw, in_code):
            if in_code and segment.lstrip().startswith("#"):
                continue  # a shell comment line
            cmds = _commands(segment)
            taken = [(s, e) for s, e, _ in cmds]
            for start, end, tool in cmds:
                if tool is not None:
                    last_tool = tool
                    tied += [Mention(no, tool, f, stripped) for f in _FLAG.findall(segment[start:end])]
            short = _SHORT.fullmatch(f"`{segment}`") if not in_code else None
            if short:
                tool = f"aknet_edge.{short.group(1)}"
                tied += [Mention(no, tool, f, stripped) for f in _FLAG.findall(short.group(2))]
                last_tool = tool
                continue
            if in_code or cmds and min(s for s, _ in taken) == 0:
                continue
            head = segment[:min(s for s, _ in taken)] if taken else segment
            for f in _FLAG.findall(head):  # a flag alone in prose: `--preview-host ADDR`
                if f in FOREIGN_FLAGS:
                    continue
                if last_tool:
                    tied.append(Mention(no, last_tool, f, stripped))
                else:
                    loose.append(Mention(no, section or "", f, stripped))
    return tied, loose


@lru_cache(maxsize=None)
def _parser_flags(module: str) -> FrozenSet[str]:
    p = importlib.import_module(module).parser()
    return frozenset(s for a in p._actions for s in a.option_strings)  # argparse keeps no public list of them


def _help_flags(tool: str) -> FrozenSet[str]:
    cmd = [sys.executable, tool] if tool.endswith(".py") else [sys.executable, "-m", tool]
    proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, f"{tool} --help failed: {proc.stderr[-2000:]}"
    return frozenset(_FLAG.findall(proc.stdout))


def known_flags(tools: List[str]) -> Dict[str, FrozenSet[str]]:
    """Each tool's flags: its parser()'s, else its --help's (run in parallel: some import torch)."""
    out = {t: _parser_flags(WITH_PARSER[t]) for t in tools if t in WITH_PARSER}
    rest = [t for t in tools if t not in WITH_PARSER]
    with ThreadPoolExecutor(max_workers=4) as pool:
        out.update(zip(rest, pool.map(_help_flags, rest)))
    return out


def unknown(tied: List[Mention], loose: List[Mention], flags: Dict[str, FrozenSet[str]]) -> List[str]:
    """Every mention whose flag its tool (tied) or every tool (loose) lacks, as a report line."""
    every = frozenset().union(*flags.values())
    bad = [(m, f"{m.flag} is not a flag of {m.tool}") for m in tied if m.flag not in flags[m.tool]]
    bad += [(m, f"{m.flag} is a flag of no tool" + (f" (section: {m.tool})" if m.tool else ""))
            for m in loose if m.flag not in every]
    return [f"README.md:{m.line}: {why}: {m.text[:160]}" for m, why in sorted(bad, key=lambda b: b[0].line)]


# --------------------------------------------------------------------------- the tests


def test_every_flag_the_readme_cites_exists():
    tied, loose = mentions(README.read_text(encoding="utf-8"))
    tools = sorted({m.tool for m in tied} | {f"aknet_edge.{m}" for m in MODULES})
    assert {"aknet_edge.run", "aknet_edge.build"} <= {m.tool for m in tied} and len(tied) > 50  # it reads them
    for t in tools:
        assert t.startswith("aknet_edge.") or (REPO / t).is_file(), f"the README names {t}, which does not exist"
    bad = unknown(tied, loose, known_flags(tools))
    assert not bad, "flags the README cites that do not exist:\n" + "\n".join(bad)


SAMPLE = """\
# Tool
## Runtime: `python -m aknet_edge.run`

```bash
.venv/bin/python -m aknet_edge.run udp://x --jsonl - --no-such-flag   # --not-this-comment
python3 -m venv --system-site-packages .venv && .venv/bin/pip install --upgrade pip
python -m aknet_edge.build --from pkg --out out && python bench/soak.py --minutes 3
python -m aknet_edge.run a \\
    --stats 5
```

The page needs `--preview-port N`; `--mystery-flag` too. Build it with `build --eval DIR`, then
`python -m aknet_edge.export --split d/` and `--out x.onnx` after it.

```python
run(flag="--not-a-flag")
```
### Serving

Prose flag `--preview-host ADDR` under a subsection inherits the run section.
"""


def test_the_reader_ties_each_flag_to_the_tool_it_belongs_to():
    tied, loose = mentions(SAMPLE)
    assert {(m.tool, m.flag) for m in tied} == {
        ("aknet_edge.run", "--jsonl"), ("aknet_edge.run", "--no-such-flag"), ("aknet_edge.run", "--stats"),
        ("aknet_edge.build", "--from"), ("aknet_edge.build", "--out"), ("bench/soak.py", "--minutes"),
        ("aknet_edge.build", "--eval"), ("aknet_edge.export", "--split"), ("aknet_edge.export", "--out"),
    }, sorted(tied)
    assert [(m.tool, m.flag, m.line) for m in loose] == [
        ("aknet_edge.run", "--preview-port", 12), ("aknet_edge.run", "--mystery-flag", 12),
        ("aknet_edge.run", "--preview-host", 20)]  # the subsection is still the runtime's
    lines = {m.flag: m.line for m in tied}
    assert lines["--no-such-flag"] == 5 and lines["--stats"] == 9


def test_an_unknown_flag_is_reported_with_its_line():
    tied, loose = mentions(SAMPLE)
    tools = ["aknet_edge.run"]
    bad = unknown([m for m in tied if m.tool in tools], loose, known_flags(tools))
    assert len(bad) == 2, bad
    assert bad[0].startswith("README.md:5: --no-such-flag is not a flag of aknet_edge.run: .venv/bin/python")
    assert bad[1].startswith("README.md:12: --mystery-flag is a flag of no tool (section: aknet_edge.run): The page")


@pytest.mark.parametrize("tool", ["aknet_edge.run", "aknet_edge.build"])
def test_hidden_negations_count_as_flags(tool):
    flags = known_flags([tool])[tool]
    assert "--no-overlap" in flags if tool == "aknet_edge.run" else "--no-progress" in flags
