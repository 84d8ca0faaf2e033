"""docs/modules/*.md and docs/roles/*.md are generated; they must match the collection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_docs_are_current():
    result = subprocess.run([sys.executable, str(ROOT / 'docs' / 'generate.py'), '--check'],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, (
        'generated docs are stale; run `python docs/generate.py` and commit:\n' + result.stdout + result.stderr)
