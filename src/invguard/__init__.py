"""InvGuard: measure and reduce how much of its training data a model leaks through model inversion.

The top-level package is deliberately light: importing it does not import torch or train anything.
Import the parts you need, e.g. ``from invguard.attacks import MIFace``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
