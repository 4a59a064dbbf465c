"""modelyard: a self-hosted experiment tracker and model registry."""

__version__ = "0.1.0"
