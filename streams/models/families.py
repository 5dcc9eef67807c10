"""What each model family is: its tensors, strides, input size, thresholds, name and decoding.

The catalog says where a model file comes from; a family says what a model of
that kind takes and gives. The pipeline asks the configured family for its
decoder and its name, so nothing branches on family names and every record
names the families that actually ran.

The tensor names of YuNet and SFace are those of their serving variants (see
:mod:`streams.models.variants`): the contract with ``triton-infer-custom/``
configs. An SCRFD export keeps its own names; its outputs are read in the
model's order. Wire format: uint8 NHWC in OpenCV's **BGR** channel order.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import numpy as np

from streams.vision.align import ALIGNED_SIZE
from streams.vision.detect import Detections, decode_scrfd, decode_yunet


class Family:
    """A family's name and the upstream release facestream serves, as written into output records."""

    name: str
    release: str  # empty when a deployment brings its own file of the family

    @property
    def identity(self) -> str:
        return f"{self.name}-{self.release}" if self.release else self.name


class DetectorFamily(Family, abc.ABC):
    """A face detector: the strides of its anchor grids and how its raw outputs become candidates."""

    strides: tuple[int, ...]

    @abc.abstractmethod
    def decode(
        self, outputs: Mapping[str, np.ndarray], index: int, canvas_hw: tuple[int, int], threshold: float
    ) -> Detections:
        """Candidates of batch item ``index`` in canvas pixels; ``outputs`` as a backend returns them."""


class YuNet(DetectorFamily):
    """OpenCV Zoo's YuNet: per stride, cls/obj/bbox/kps heads over one anchor per cell, read by name."""

    name = "yunet"
    release = "2023mar"
    strides = (8, 16, 32)
    #: Serving variant input: uint8 [N, H, W, 3] BGR; H and W multiples of the largest stride.
    input = "images"

    @property
    def outputs(self) -> tuple[str, ...]:
        """Upstream output names: per head and stride s, float32 [N, (H/s)*(W/s), k]."""
        return tuple(f"{head}_{s}" for head in ("cls", "obj", "bbox", "kps") for s in self.strides)

    def decode(
        self, outputs: Mapping[str, np.ndarray], index: int, canvas_hw: tuple[int, int], threshold: float
    ) -> Detections:
        return decode_yunet(outputs, index, canvas_hw, threshold, self.strides)


class Scrfd(DetectorFamily):
    """insightface SCRFD with key points, ahead of most ArcFace embedders: two anchors per cell, outputs by position."""

    name = "scrfd"
    release = ""  # 500m to 34g, each deployment its own export
    strides = (8, 16, 32)

    def decode(
        self, outputs: Mapping[str, np.ndarray], index: int, canvas_hw: tuple[int, int], threshold: float
    ) -> Detections:
        return decode_scrfd(list(outputs.values()), index, canvas_hw, threshold, self.strides)


class SFace(Family):
    """OpenCV Zoo's SFace recogniser: aligned faces in, embeddings out."""

    name = "sface"
    release = "2021dec"
    #: Serving variant input: uint8 [N, 112, 112, 3] BGR faces on the ArcFace template it was trained on.
    input = "faces"
    input_size = ALIGNED_SIZE
    #: Serving variant output: float32 [N, dim], not normalised (the pipeline L2-normalises).
    output = "embeddings"
    dim = 128
    #: Cosine similarity above which two faces are the same person: SFace's published threshold.
    same_person = 0.363


YUNET = YuNet()
SCRFD = Scrfd()
SFACE = SFace()

#: Detector families by their ``FACESTREAM_DETECTOR_FORMAT`` spelling (the setting's choices).
DETECTORS: dict[str, DetectorFamily] = {family.name: family for family in (YUNET, SCRFD)}
