"""Stage train_baseline: train the dense model of one seed of sweep.seeds.

The work is ``prunelab.pipeline.baseline.train_baseline``.
"""

import argparse

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)

from prunelab.pipeline import runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, required=True, help="the replicate: one of sweep.seeds")
    args = parser.parse_args()
    from prunelab.pipeline.baseline import train_baseline  # imported under the runner: Ctrl-C is clean

    train_baseline(args.seed)


if __name__ == "__main__":
    runner.run(main, "train_baseline")
