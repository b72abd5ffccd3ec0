"""Run before anything else in a stage script (so before torch is imported).

1. Put *this* checkout's src/ first on sys.path: `dvc exp run --queue/--temp` runs stages
   in a temporary copy of the repo while the virtual environment's editable install
   points at the main checkout; without this the copy's params would run against the
   workspace's code, not the code DVC hashed as a dependency.
2. In such a temporary copy, make idle OpenMP threads sleep instead of spin
   (OMP_WAIT_POLICY=PASSIVE). `dvc queue start -j 2` runs experiments side by side, and two
   spinning PyTorch processes on 2 cores run about 5x slower than one (measured: 4.3 s per
   MLP epoch instead of 0.8 s); passive waiting brings that to about 1.25 s each without
   changing a single number (unlike fewer threads, which changes float summation order).
   A plain `dvc repro` keeps the faster spinning default. Set the variable yourself to
   override either way.
"""

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT / "src"))

if (os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep) in str(_ROOT) + os.sep:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
