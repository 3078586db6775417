"""Augmentation policies a space can search by name (``augmentation: {policy: [none, shift,
flip, trivial]}``), each a fixed recipe; ``erasing`` (random erasing's probability) combines with
any of them.

* ``none``: no augmentation (data without spatial order, or a small model that underfits);
* ``shift``: a light shift, up to 10% of the image size (safe for digits and text);
* ``flip``: horizontal flips and the light shift (photos: a flipped cat is a cat);
* ``trivial``: torchvision's TrivialAugmentWide (Müller & Hutter, 2021): one random op of 14
  (rotation, shear, colour, solarise, ...) at a random magnitude, per group of images;
* ``trivial_flip``: both.

``custom`` (the default) uses the space's single settings (``hflip``, ``rotation``, ...). The
policy chosen is logged as ``augment.policy`` and kept in the candidate, so a resumed trial
augments the same way. No policy is in a built-in space by default: flips and wide rotations
swap the classes of digits and text, so a space must ask for them.
"""

from __future__ import annotations

from typing import Any

CUSTOM = "custom"
POLICIES: dict[str, dict[str, Any]] = {
    "none": {},
    "shift": {"translate": 0.1},
    "flip": {"hflip": True, "translate": 0.1},
    "trivial": {"trivial": True},
    "trivial_flip": {"trivial": True, "hflip": True},
}
NAMES = (CUSTOM, *POLICIES)
