"""talkset: build multi-person talking-video datasets and train the CovOG baseline.

The pipeline follows "Multi-human Interactive Talking Dataset" (MIT, Sec. 3): shots with 2-4
people in one static shot, annotated per person per frame with a body box, COCO-WholeBody
keypoints and a speaking score in [-1, 1].
"""

from talkset.provenance import version as _version

__version__ = _version("talkset")
