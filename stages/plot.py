"""Stage plot: the sweep's curves, table and summary.

The work is ``prunelab.pipeline.plot.plot``.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)

from prunelab.pipeline import runner


def main() -> None:
    from prunelab.pipeline.plot import plot  # imported under the runner: Ctrl-C is clean

    plot()


if __name__ == "__main__":
    runner.run(main)
