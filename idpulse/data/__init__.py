"""Face datasets: CelebA (its own file layout), UTKFace (labels in file names), plain folders."""

from .faces import (
    CELEBA_ATTRIBUTES,
    FAIRFACE_RACES,
    RACE_DATASETS,
    UTKFACE_RACES,
    CelebA,
    FaceDataset,
    FairFace,
    ImageFolder,
    UTKFace,
    race_dataset,
    shared_dir,
)
from .recordio import MS1MRecordIO, RecordIOReader

__all__ = ["CELEBA_ATTRIBUTES", "FAIRFACE_RACES", "UTKFACE_RACES", "CelebA", "FaceDataset", "FairFace", "ImageFolder",
           "MS1MRecordIO", "RACE_DATASETS", "RecordIOReader", "UTKFace", "race_dataset", "shared_dir"]
