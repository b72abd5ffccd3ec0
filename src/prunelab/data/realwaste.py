"""realwaste: UCI RealWaste, 4,752 colour photographs (524x524 JPEG) of waste in 9 classes.

Sources: ``data.root`` holding ``realwaste.zip``, or its extracted class folders at
``root/<Class>``, ``root/RealWaste/<Class>`` or ``root/realwaste-main/RealWaste/<Class>``
(nothing touches the network); otherwise the zip (~656 MB) from UCI, cached under
``data/downloads/realwaste``. The zip is read in place, never extracted. Inside it images
sit at ``realwaste-main/RealWaste/<Class>/<Class>_<n>.jpg``; an image's class is the name
of its parent folder, so any prefix works, and files outside the nine class folders are
ignored.

UCI publishes no checksum for the zip, so integrity comes from (1) the CRC-32 that
``zipfile`` checks on every member it reads, (2) exactly the nine expected class folders
and (3) per-class image counts equal to ``EXPECTED_COUNTS``; anything else is an error.
Classes are in alphabetical order (as ImageFolder would give). There is no official split:
train / validation / test are cut stratified with the seed.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from prunelab.data.catalog import DATASETS
from prunelab.data.download import verify
from prunelab.data.images import Entry, ZipEntry, build_spec, is_image, list_images, open_zip
from prunelab.data.sources import RemoteFile, Source, download_all, find, local_root
from prunelab.data.spec import DataSpec
from prunelab.errors import PrunelabError

EXPECTED_COUNTS = {
    "Cardboard": 461,
    "Food Organics": 411,
    "Glass": 420,
    "Metal": 790,
    "Miscellaneous Trash": 495,
    "Paper": 500,
    "Plastic": 921,
    "Textile Trash": 318,
    "Vegetation": 436,
}
SOURCE = Source({"archive": RemoteFile("realwaste.zip", None)}, ("https://archive.ics.uci.edu/static/public/908/",))
SUBDIRS = ("", "RealWaste", "realwaste-main/RealWaste")  # where extracted class folders may sit under data.root


def zip_groups(archive, classes: tuple[str, ...]) -> dict[str, list[Entry]]:
    """Members ``.../<Class>/<image>`` of an open zip, by class, sorted by member name."""
    groups: dict[str, list[Entry]] = {c: [] for c in classes}
    for member in sorted(archive.namelist()):
        parts = PurePosixPath(member).parts
        hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
        if len(parts) >= 2 and parts[-2] in groups and is_image(parts[-1]) and not hidden:
            groups[parts[-2]].append(ZipEntry(archive, member))
    return groups


def folder_groups(root: Path, classes: tuple[str, ...]) -> dict[str, list[Entry]]:
    """Extracted class folders under the first of ``SUBDIRS`` that has any of them."""
    for sub in SUBDIRS:
        if any((root / sub / c).is_dir() for c in classes):
            return {c: list_images(root / sub / c, recursive=False) for c in classes}
    where = ", ".join(str(root / s) for s in SUBDIRS)
    raise PrunelabError(
        f"data.root: neither {SOURCE.files['archive'].name} nor the RealWaste class folders "
        f"({', '.join(classes)}) found (looked in {where})"
    )


def check_counts(groups: dict[str, list[Entry]], expected: dict[str, int], where: object) -> None:
    if missing := [c for c, entries in groups.items() if not entries]:
        raise PrunelabError(
            f"{where}: RealWaste class folder(s) {', '.join(missing)} missing or empty; "
            f"expected all of {', '.join(expected)}"
        )
    for cls, n in expected.items():
        if len(groups[cls]) != n:
            raise PrunelabError(
                f"{where}: class {cls!r} has {len(groups[cls])} images, expected {n} "
                "(incomplete, or not the published RealWaste)"
            )


@DATASETS.register("realwaste")
def load(
    cfg, seed: int, *, source: Source = SOURCE, expected: dict[str, int] = EXPECTED_COUNTS, cache: Path | None = None
) -> DataSpec:
    classes = tuple(expected)
    if cfg.root is None:
        archive = download_all(source, "realwaste", cache)["archive"]
    else:
        root = local_root(cfg.root)
        if (archive := find(root, [source.files["archive"].name])) is None:
            groups = folder_groups(root, classes)
            check_counts(groups, expected, root)
            return build_spec("realwaste", groups, cfg, seed)
        archive = verify(archive, source.files["archive"].md5)  # a no-op for UCI's zip (no checksum)
    with open_zip(archive) as zf:
        groups = zip_groups(zf, classes)
        check_counts(groups, expected, archive)
        return build_spec("realwaste", groups, cfg, seed)
