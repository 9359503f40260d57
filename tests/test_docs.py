"""Every Python block of README.md and docs/*.md runs as written.

Each block runs alone, in a fresh namespace (so it must make its own
imports) and in a temporary working directory (what it writes goes there).
Blocks that train run with tiny sizes: `epochs=N` becomes `epochs=1` and
`steps_per_epoch=N` becomes `steps_per_epoch=2`; nothing else changes.
"""

import pathlib
import re

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
TINY = [
    (re.compile(r"\bepochs=\d+"), "epochs=1"),
    (re.compile(r"\bsteps_per_epoch=\d+"), "steps_per_epoch=2"),
]
# Sections whose blocks took more than 10 s on 2 shared CPU cores.
SLOW_SECTIONS = ("Metric learning", "Self-supervised", "Distributed training")


def python_blocks():
    """`(id, code)` of every ```python block, id `file:line`."""
    blocks = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            heading = re.findall(r"^#+ (.*)$", text[: match.start()], re.M)
            section = heading[-1] if heading else ""
            blocks.append((f"{path.name}:{line}", section, match.group(1)))
    return blocks


def params():
    for block_id, section, code in python_blocks():
        slow = section.startswith(SLOW_SECTIONS)
        marks = [pytest.mark.slow] if slow else []
        yield pytest.param(code, id=f"{block_id} {section}", marks=marks)


def test_every_document_has_its_blocks_found():
    names = {block_id.split(":")[0] for block_id, _, _ in python_blocks()}
    assert {"README.md", "distributed.md"} <= names


@pytest.mark.parametrize("code", list(params()))
def test_block_runs(code, tmp_path, monkeypatch):
    for pattern, replacement in TINY:
        code = pattern.sub(replacement, code)
    monkeypatch.chdir(tmp_path)
    keras.utils.clear_session(free_memory=False)
    try:
        exec(compile(code, "<doc block>", "exec"), {"__name__": "__main__"})
    finally:
        keras.utils.clear_session(free_memory=False)
