"""The face feature extractor f (docs/equations.md, section 3): backbones, ArcFace margin, race and
attribute heads, and the similarity loss S_t (Eq. 4)."""

from .backbones import BACKBONES, IRSE, IResNet, MobileFaceNet, get_backbone, infer_backbone
from .losses import ArcFaceHead, AttributeHead, RaceHead, angle_deg, siam_loss, similarity_loss
from .model import FaceExtractor, load_any_extractor, load_extractor, load_insightface_backbone, save_extractor

__all__ = ["BACKBONES", "IRSE", "ArcFaceHead", "AttributeHead", "FaceExtractor", "IResNet", "MobileFaceNet", "RaceHead",
           "angle_deg", "get_backbone", "infer_backbone", "load_any_extractor", "load_extractor",
           "load_insightface_backbone", "save_extractor", "siam_loss", "similarity_loss"]
