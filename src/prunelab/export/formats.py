"""The two export formats: the suffix of each one's file, and the name and version written into it."""

SUFFIXES = {"pt2": ".pt2", "sparse": ".sparse"}
PT2_FORMAT, SPARSE_FORMAT, VERSION = "prunelab-pt2", "prunelab-sparse", 1
