"""Control losses that steer the PULSE search with the extractor f (Eq. 5-7, `losses.py`, one
registered class each) and the controlled search of Eq. 8 (`search.py`)."""

from .losses import CONTROLS, AttrLoss, ControlLoss, RaceLoss, SimLoss, parse_attributes, race_index, register_control
from .search import ControlConfig, Controls, controlled_search, objective_text

__all__ = ["CONTROLS", "AttrLoss", "ControlConfig", "ControlLoss", "Controls", "RaceLoss", "SimLoss",
           "controlled_search", "objective_text", "parse_attributes", "race_index", "register_control"]
