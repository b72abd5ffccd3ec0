"""Stage sweep: the seed's baseline pruned at every k of sweep.sparsities.

The work is ``prunelab.pipeline.sweep.sweep``.
"""

import argparse

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)

from prunelab.pipeline import runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", required=True, help="one of sweep.methods")
    parser.add_argument("--seed", type=int, required=True, help="the replicate: one of sweep.seeds")
    args = parser.parse_args()
    from prunelab.pipeline.sweep import sweep  # imported under the runner: Ctrl-C is clean

    sweep(args.method, args.seed)


if __name__ == "__main__":
    runner.run(main, "sweep")
