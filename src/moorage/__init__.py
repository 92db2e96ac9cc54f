"""moorage: dedicated inference endpoints on your own machines."""

__version__ = "0.1.0"

__all__ = ["__version__"]
