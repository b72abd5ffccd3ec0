"""Deep Compression's quantization of a pruned model (Han et al. 2016): weight sharing by k-means or
linear integers per channel (``quantize.py``), and trained quantization (``trained.py``). The
encoding of what they decide into the .sparse file is ``prunelab.export.codec``."""

from prunelab.compress.quantize import SCHEMES, apply, kmeans, linear, quantize
from prunelab.compress.trained import finetune_centroids

__all__ = ["SCHEMES", "apply", "finetune_centroids", "kmeans", "linear", "quantize"]
