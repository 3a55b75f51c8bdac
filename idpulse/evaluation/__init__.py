"""Evaluation: the generator's quality report (the paper's tables arrive with their issue)."""
