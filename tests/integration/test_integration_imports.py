"""Import hygiene: ``rankseg`` loads only torch and numpy, and ``rankseg.integration`` works without
``transformers`` (like rankseg 0.0.8, it reads output fields by name and never imports it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_rankseg_loads_no_optional_dependency():
    code = "import rankseg, sys; print([m for m in ('transformers', 'scipy', 'PIL') if m in sys.modules])"
    assert _python(code) == "[]"
    code = "import rankseg.integration, sys; print([m for m in ('transformers', 'scipy', 'PIL') if m in sys.modules])"
    assert _python(code) == "[]"


def test_integration_works_when_transformers_is_not_installed():
    code = (
        "import sys; sys.modules['transformers'] = None\n"  # makes `import transformers` fail
        "import torch\n"
        "from rankseg.integration import sam, transformers as rt\n"
        "probs = rt.restore_semantic_probs({'logits': torch.randn(1, 3, 4, 4)}, target_sizes=[(6, 5)])\n"
        "masks = sam.Sam2().postprocess({'pred_masks': torch.randn(1, 2, 4, 4)}, original_sizes=(5, 5))\n"
        "print(tuple(probs[0].shape), tuple(masks[0].shape), masks[0].dtype)"
    )
    assert _python(code) == "(3, 6, 5) (1, 2, 5, 5) torch.bool"
