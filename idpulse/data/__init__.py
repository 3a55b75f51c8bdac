"""Face datasets: CelebA (its own file layout), UTKFace (labels in file names), FairFace, plain
folders; the registered ones by name (`dataset("utkface", split="train")`)."""

from .faces import (
    CELEBA_ATTRIBUTES,
    DATASETS,
    FAIRFACE_RACES,
    UTKFACE_RACES,
    CelebA,
    FaceDataset,
    FairFace,
    ImageFolder,
    UTKFace,
    dataset,
    dataset_names,
    race_dataset,
    race_dataset_names,
    register_dataset,
    shared_dir,
)
from .recordio import MS1MRecordIO, RecordIOReader

__all__ = ["CELEBA_ATTRIBUTES", "FAIRFACE_RACES", "UTKFACE_RACES", "CelebA", "FaceDataset", "FairFace", "ImageFolder",
           "MS1MRecordIO", "DATASETS", "RecordIOReader", "UTKFace", "dataset", "dataset_names", "race_dataset",
           "race_dataset_names", "register_dataset", "shared_dir"]
