"""Every Python snippet in the README runs, so none can rot: in order, each in a fresh
interpreter, in one directory. A snippet whose first line is `# name.py` is that file."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPET = re.compile(r"```python\n(.*?)```", re.S)
SHRUNK = {'scale="small", trials=20, seeds=2': 'scale="smoke", trials=2, seeds=2'}
"""What a test can afford: the README's own search, at the smoke scale."""


def snippets() -> list[str]:
    return SNIPPET.findall(README.read_text())


def test_the_readme_has_its_snippets():
    found = snippets()
    assert len(found) >= 4
    assert any(all(old in s for old in SHRUNK) for s in found)  # the shrink still applies


def test_every_readme_snippet_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(README.parent), "PYTHONUNBUFFERED": "1"}
    for number, code in enumerate(snippets()):
        first = code.splitlines()[0]
        if re.fullmatch(r"# [\w/]+\.py", first):
            (tmp_path / first[2:]).write_text(code)
            continue
        for old, new in SHRUNK.items():
            code = code.replace(old, new)
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"README snippet {number}:\n{code}\n{done.stderr[-3000:]}"
    assert (tmp_path / "propagation.png").stat().st_size > 0  # the networks snippet's plot
    assert (tmp_path / "results" / "searches").is_dir()  # the API snippet's search
