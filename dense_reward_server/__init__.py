"""dense-reward-server: dense token-level rewards from an SFT model and its base model."""

__version__ = "0.1.0"
