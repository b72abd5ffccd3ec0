"""Stage finetune: retrain the pruned model, early-stopping on val loss.

The work is ``prunelab.pipeline.finetune.finetune``.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)

from prunelab.pipeline import runner


def main() -> None:
    from prunelab.pipeline.finetune import finetune  # imported under the runner: Ctrl-C is clean

    finetune()


if __name__ == "__main__":
    runner.run(main, "finetune")
