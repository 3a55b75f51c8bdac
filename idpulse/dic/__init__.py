"""DIC (Ma et al., CVPR 2020): supervised face super-resolution with iterative collaboration between
attentive recovery and landmark estimation, as a baseline beside PULSE. Importing this package loads
no weights and touches no files."""

from .config import DICConfig, DICDataConfig, DICFileConfig, DICLandmarksConfig, DICUseConfig
from .model import DIC, AttentiveFusion, DICOutput, FeedbackBlock, component_heatmaps, dic_loss, gt_heatmaps
from .weights import load_dic, load_dic_for, save_dic

__all__ = ["DIC", "AttentiveFusion", "DICConfig", "DICDataConfig", "DICFileConfig", "DICLandmarksConfig", "DICOutput",
           "DICUseConfig", "FeedbackBlock", "component_heatmaps", "dic_loss", "gt_heatmaps", "load_dic", "load_dic_for",
           "save_dic"]
