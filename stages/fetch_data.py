"""Stage fetch_data: load the dataset named by data.name, split it, save it as tensors.

The work is ``prunelab.pipeline.fetch.fetch_data``.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)

from prunelab.pipeline import runner


def main() -> None:
    from prunelab.pipeline.fetch import fetch_data  # imported under the runner: Ctrl-C is clean

    fetch_data()


if __name__ == "__main__":
    runner.run(main)
