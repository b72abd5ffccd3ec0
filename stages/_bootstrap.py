"""Make a stage run the library in *this* checkout's src/, the code DVC hashed as a dep.

`dvc exp run --queue/--temp` runs stages in a temporary copy of the repo while the
virtual environment's editable install points at the main checkout; without this the
copy's params would run against the workspace's code.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
