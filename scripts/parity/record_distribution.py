"""Record rankseg 0.0.8's outcomes of the pinned ``rankseg.distribution`` calls for the tests.

    python scripts/parity/record_distribution.py --official /tmp/official

``--official`` is a folder holding 0.0.8's ``rankseg`` package (the unpacked wheel, or ``pip install --no-deps
--target DIR rankseg==0.0.8``); the specs of :func:`distribution_cases.pinned` run there in a worker process with
``PYTHONPATH=/tmp/official`` and, for the summary line, under ours. The outcomes (value, or exception type and
message, and the warnings) are written to ``tests/parity_data/distribution_0.0.8.json``, which
``tests/test_distribution_parity.py`` replays against ours without the wheel. The official worker needs SciPy;
some of SciPy's numerical moments take seconds, so recording takes about two minutes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "tests" / "parity_data" / "distribution_0.0.8.json"
sys.path.insert(0, str(HERE))

import distribution_cases as cases  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default="/tmp/official", help="folder holding 0.0.8's rankseg package")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if not (Path(args.official) / "rankseg" / "distribution.py").is_file():
        ap.error(f"{args.official} does not hold rankseg/distribution.py (0.0.8's package)")
    specs = cases.pinned()
    with tempfile.TemporaryDirectory() as tmp:
        res = cases.run_both(specs, args.official, str(REPO), tmp)
    payload = {
        "command": "python scripts/parity/record_distribution.py --official /tmp/official",
        "rankseg": "0.0.8",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cases": [{"spec": s, "official": o} for s, o in zip(specs, res["official"]["outcomes"])],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    # One case per line: valid JSON that diffs line by line.
    head = json.dumps({k: v for k, v in payload.items() if k != "cases"}, allow_nan=False)[:-1]
    body = ",\n".join(json.dumps(case, separators=(",", ":"), allow_nan=False) for case in payload["cases"])
    tmp_out.write_text(f'{head}, "cases": [\n{body}\n]}}\n')
    os.replace(tmp_out, out)
    verdicts = collections.Counter(
        cases.compare(s, o, r)[0] for s, o, r in zip(specs, res["ours"]["outcomes"], res["official"]["outcomes"])
    )
    print(f"recorded {len(specs)} calls into {out} ({out.stat().st_size / 1024:.0f} KiB); ours: {dict(verdicts)}")


if __name__ == "__main__":
    main()
