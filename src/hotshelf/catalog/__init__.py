"""The product catalog: a view materialized from the "catalog" log, and file loaders."""

from hotshelf.catalog._loaders import ItemsFormat, detect_format, load_items_file
from hotshelf.catalog._view import CatalogView

__all__ = ["CatalogView", "ItemsFormat", "detect_format", "load_items_file"]
