"""neuronaudit: generate and evaluate natural-language explanations of neurons in vision models."""

__version__ = "0.1.0"
