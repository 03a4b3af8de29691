"""MobileViT from Scratch: the library behind the book.

Each module implements one idea of the paper (Mehta & Rastegari, ICLR 2022); chapters import them.
"""

from mobilevit_edu.models.registry import create_model, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "__version__"]
