"""hotshelf: real-time recommendations and ad/search relevance for online stores."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hotshelf")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = ["__version__"]
