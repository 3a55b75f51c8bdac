"""Face datasets: CelebA (its own file layout), UTKFace (labels in file names), plain folders."""

from .faces import (
    CELEBA_ATTRIBUTES,
    FAIRFACE_RACES,
    UTKFACE_RACES,
    CelebA,
    FaceDataset,
    FairFace,
    ImageFolder,
    UTKFace,
    shared_dir,
)
from .recordio import MS1MRecordIO, RecordIOReader

__all__ = ["CELEBA_ATTRIBUTES", "FAIRFACE_RACES", "UTKFACE_RACES", "CelebA", "FaceDataset", "FairFace", "ImageFolder",
           "MS1MRecordIO", "RecordIOReader", "UTKFace", "shared_dir"]
