"""imagefolder: any folder of class sub-folders, torchvision's ImageFolder layout.

``data.root`` is required (there is nothing to download) and holds ``<class>/<image>``:
the class names are the sub-folder names, sorted (label i is the i-th name); images are
found recursively inside each class folder, by extension (see ``images.IMAGE_EXTENSIONS``).
Every image is decoded once to RGB ``data.image_size`` squares (shorter side resized,
centre crop), then train / validation / test are cut stratified with the seed. Each class
must end up in all three parts: with the default fractions (0.1, 0.2) that takes at least
6 images per class; fewer is an error that names the class, its count and the minimum.
"""

from __future__ import annotations

from prunelab.data.catalog import DATASETS
from prunelab.data.images import build_spec, folder_classes
from prunelab.data.sources import local_root
from prunelab.data.spec import DataSpec


@DATASETS.register("imagefolder")
def load(cfg, seed: int) -> DataSpec:
    root = local_root(cfg.root)  # never None: config validation requires data.root for imagefolder
    return build_spec("imagefolder", folder_classes(root), cfg, seed)
