"""Stage compress: quantize and encode the fine-tuned model (Deep Compression), and measure the file.

The work is ``prunelab.pipeline.compress.compress``.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)

from prunelab.pipeline import runner


def main() -> None:
    from prunelab.pipeline.compress import compress  # imported under the runner: Ctrl-C is clean

    compress()


if __name__ == "__main__":
    runner.run(main)
