"""StyleGAN v1 (the paper's generator): mapping, synthesis, the Gaussian fit, weight loading; the
interface the search relies on (`SearchableGenerator`) and the registry of architectures."""

from .protocol import ARCHITECTURES, SearchableGenerator, register_architecture
from .stylegan import Generator, MappingNetwork, SynthesisNetwork
from .weights import load_generator, load_pulse_generator, save_generator

__all__ = ["ARCHITECTURES", "Generator", "MappingNetwork", "SearchableGenerator", "SynthesisNetwork",
           "load_generator", "load_pulse_generator", "register_architecture", "save_generator"]
