"""Stage efficiency: what pruning buys: accuracy against latency and size on disk.

The work is ``prunelab.pipeline.efficiency.efficiency``.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)

from prunelab.pipeline import runner


def main() -> None:
    from prunelab.pipeline.efficiency import efficiency  # imported under the runner: Ctrl-C is clean

    efficiency()


if __name__ == "__main__":
    runner.run(main)
