"""Stage prune: prune the seed's baseline with prune.method at prune.sparsity.

The work is ``prunelab.pipeline.prune.prune``.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)

from prunelab.pipeline import runner


def main() -> None:
    from prunelab.pipeline.prune import prune  # imported under the runner: Ctrl-C is clean

    prune()


if __name__ == "__main__":
    runner.run(main, "prune")
