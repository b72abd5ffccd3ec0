"""Write a prunelab checkpoint as files other tools load: ONNX and safetensors.

    uv run python -m prunelab.pipeline.interop CHECKPOINT [--to onnx safetensors] [--out DIR]

CHECKPOINT is a checkpoint a stage wrote (models/finetuned.pt, models/pruned.pt,
models/baseline/seed-0.pt). ``--to`` picks the files (default: both); ``--out`` the folder.
Without ``--out`` they go to the checkpoint's export folder (models/export/finetuned for
models/finetuned.pt, models/export/pruned for models/pruned.pt) as model.onnx and
model.safetensors, or, for a checkpoint without one, beside it, named after it
(models/baseline/seed-0.onnx: one pair per seed, as seed-0.pt2 is).

Each file is checked before this prints its line (path, size, max |Δlogit|): ONNX Runtime
runs the .onnx on a probe batch, the .safetensors is loaded back into its model class, and
either must give the checkpoint's logits within 1e-4 (relative to the largest logit where
that exceeds 1, as prunelab's own exports). What the files are: ``prunelab.export.interop``.

Not a DVC stage: nothing tracks these files. An export folder is a stage's DVC output, so
files added to it show in ``dvc status`` as a change to it, and go when that stage runs
again; ``--out`` puts them in a place of your own. Bad input (a missing or unreadable
checkpoint, an unknown ``--to``) is one line on stderr and exit code 2 (``prunelab.cli``).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from pathlib import Path

from prunelab import cli, paths
from prunelab.errors import PrunelabError

SUFFIXES = {"onnx": ".onnx", "safetensors": ".safetensors"}
EXPORT_FOLDERS = {paths.PRUNED_MODEL: paths.PRUNED_EXPORT, paths.FINETUNED_MODEL: paths.FINETUNED_EXPORT}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, through prunelab.cli, not argparse's usage block
        raise PrunelabError(f"{self.prog}: {message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m prunelab.pipeline.interop",
        description="Write a prunelab checkpoint as ONNX and/or safetensors, checked against the model.",
    )
    parser.add_argument("checkpoint", type=Path, help="a checkpoint a stage wrote, e.g. models/finetuned.pt")
    parser.add_argument("--to", nargs="+", default=list(SUFFIXES), metavar="FORMAT", help="onnx, safetensors")
    parser.add_argument("--out", type=Path, metavar="DIR", help="the folder (default: the checkpoint's export folder)")
    return parser


def formats(given: Sequence[str]) -> list[str]:
    """The formats asked for, each once, in the order given; an unknown one is one PrunelabError."""
    for name in given:
        if name not in SUFFIXES:
            raise PrunelabError(f"--to {name!r} is not a format this writes; allowed: {', '.join(SUFFIXES)}")
    return list(dict.fromkeys(given))


def destination(checkpoint: Path, out: Path | None) -> tuple[Path, str]:
    """(folder, file stem) of the files written for ``checkpoint``."""
    if out is not None:
        if out.exists() and not out.is_dir():
            raise PrunelabError(f"--out {out}: is a file; allowed: a folder (created if missing)")
        return out, paths.EXPORT_STEM
    for model, folder in EXPORT_FOLDERS.items():
        if checkpoint.resolve() == model.resolve():  # stages name their files from the repository root
            return folder, paths.EXPORT_STEM
    return checkpoint.parent, checkpoint.stem


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    wanted = formats(args.to)
    folder, stem = destination(args.checkpoint, args.out)

    from prunelab.export import interop  # torch and onnx load after the arguments are checked
    from prunelab.train import checkpoint

    ckpt = checkpoint.load(args.checkpoint)
    for fmt in wanted:
        target = folder / f"{stem}{SUFFIXES[fmt]}"
        if fmt == "onnx":
            interop.write_onnx(ckpt.model, ckpt.input_shape, target)
            session = interop.onnx_session(target)
            diff = interop.compare(ckpt.model, functools.partial(interop.run_onnx, session), ckpt.input_shape, target)
        else:
            interop.write_safetensors(
                ckpt.model,
                target,
                model_cfg=ckpt.model_cfg,
                input_shape=ckpt.input_shape,
                num_classes=ckpt.num_classes,
                masks=ckpt.masks,
                meta=ckpt.meta,
            )
            loaded = interop.load_safetensors(target).model.eval()
            diff = interop.compare(ckpt.model, loaded, ckpt.input_shape, target)
        print(f"{target}: {target.stat().st_size:,} bytes, max |Δlogit| {diff:.2g}")


if __name__ == "__main__":
    cli.run(main)
