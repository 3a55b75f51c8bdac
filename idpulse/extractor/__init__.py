"""The face feature extractor f (PAPER_NOTES section 3): backbones, ArcFace margin, race and
attribute heads, and the similarity loss S_t (Eq. 4)."""

from .backbones import BACKBONES, IRSE, IResNet, get_backbone
from .losses import ArcFaceHead, AttributeHead, RaceHead, angle_deg, similarity_loss

__all__ = ["BACKBONES", "IRSE", "ArcFaceHead", "AttributeHead", "IResNet", "RaceHead", "angle_deg", "get_backbone",
           "similarity_loss"]
