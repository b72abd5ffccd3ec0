"""Stage evaluate: test, count, size and time the pruned and fine-tuned models.

The work is ``prunelab.pipeline.evaluate.evaluate``.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)

from prunelab.pipeline import runner


def main() -> None:
    from prunelab.pipeline.evaluate import evaluate  # imported under the runner: Ctrl-C is clean

    evaluate()


if __name__ == "__main__":
    runner.run(main)
