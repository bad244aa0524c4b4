"""A folder of one's own images as a data set: read and check it, split it, write the split as Real-IAD JSONs.

``read_folder`` finds the layout (per-type folders or MVTec AD), the defect-type
vocabulary and every image with its mask, raising ``FolderFormatError`` for a bad
folder before any training; ``split_folder`` makes the seeded train / validation /
test split, and ``write_split`` writes it where
``mtfcdd.data.realiad.load_splits`` reads it (``image_root`` pointed at the folder).
``FolderDataModule`` (``data=folder``) does all three for the commands.
"""

from mtfcdd.data.folder.index import read_folder
from mtfcdd.data.folder.realiad_json import write_split
from mtfcdd.data.folder.records import FolderFormatError, FolderImage, FolderIndex, Skipped
from mtfcdd.data.folder.split import FolderSplit, split_folder

__all__ = [
    "FolderFormatError",
    "FolderImage",
    "FolderIndex",
    "FolderSplit",
    "Skipped",
    "read_folder",
    "split_folder",
    "write_split",
]
