"""Real photographs for the image tests: the sample images scikit-image ships (a dev
dependency; nothing is downloaded). Two of them show one motorcycle from two viewpoints
(a stereo pair), the rest unrelated things."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["CAT", "COFFEE", "MOTORCYCLE_LEFT", "MOTORCYCLE_RIGHT", "OTHERS", "photo"]

CAT, COFFEE, ROCKET, ASTRONAUT = "chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"
MOTORCYCLE_LEFT, MOTORCYCLE_RIGHT = "motorcycle_left.png", "motorcycle_right.png"
OTHERS = (CAT, COFFEE, ROCKET, ASTRONAUT)


def photo(name: str) -> Path:
    """The sample photo ``name`` from scikit-image's data directory."""
    spec = importlib.util.find_spec("skimage")
    assert spec is not None, "scikit-image is not installed"
    assert spec.submodule_search_locations, "scikit-image is not installed"
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    assert path.is_file(), path
    return path
