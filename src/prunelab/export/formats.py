"""prunelab's export formats: the suffix of each one's file, and the name and version written into it."""

SUFFIXES = {"pt2": ".pt2", "sparse": ".sparse"}
PT2_FORMAT, SPARSE_FORMAT, VERSION = "prunelab-pt2", "prunelab-sparse", 1
# .sparse version 2 adds layers stored as shared weights (Deep Compression: codec.py); a file
# without such a layer is still written as version 1, and this prunelab reads both
SHARED_VERSION = 2
SPARSE_READS = (VERSION, SHARED_VERSION)
