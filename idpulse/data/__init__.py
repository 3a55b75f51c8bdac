"""Face datasets: CelebA (its own file layout), UTKFace (labels in file names), plain folders."""

from .faces import (
    CELEBA_ATTRIBUTES,
    UTKFACE_RACES,
    CelebA,
    FaceDataset,
    ImageFolder,
    UTKFace,
    shared_dir,
)

__all__ = ["CELEBA_ATTRIBUTES", "UTKFACE_RACES", "CelebA", "FaceDataset", "ImageFolder", "UTKFace", "shared_dir"]
