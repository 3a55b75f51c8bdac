"""StyleGAN v1 (the paper's generator): mapping, synthesis, the Gaussian fit, weight loading."""

from .stylegan import Generator, MappingNetwork, SynthesisNetwork
from .weights import load_generator, load_pulse_generator, save_generator

__all__ = ["Generator", "MappingNetwork", "SynthesisNetwork", "load_generator", "load_pulse_generator",
           "save_generator"]
