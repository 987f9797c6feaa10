"""The one entry point: a batch of frames in, every face's box, landmarks, gender and age out.

``FaceAnalyzer.analyze`` runs the whole batch on the device without a Python loop per frame or
per face:

1. upload the uint8 frames once,
2. resize and normalise on the device, detect faces in all frames in one forward pass,
3. map boxes and landmarks back to source pixels,
4. align all faces from the full-resolution frames in one ``grid_sample`` (the 112 px ArcFace
   crop, and for the Cydral classifier the 64 and 32 px dlib-style chips; with ``embeddings``
   also dlib's 150 px face-recognition chip),
5. classify all crops in one forward pass per network (and embed them, with ``embeddings``),
6. copy the results to the host once.

Two gender/age classifiers (``models.weights.CLASSIFIERS``): ``cydral`` (default, public domain:
gender from the 32 px chip, age from the 64 px one) and ``insightface`` (opt-in, non-commercial
licence: both from the 112 px crop).

On CPU, steps 2-4 run over chunks of CPU_DETECT_CHUNK frames and step 5 over chunks of
CPU_CLASSIFY_CHUNK crops, which is faster there (caches); the results are the same. An analyzer
keeps a reusable buffer on CPU: use one instance per thread.

Example::

    analyzer = FaceAnalyzer("weights")
    faces = analyzer.analyze(frames)  # frames: (N, H, W, 3) uint8 BGR
    for i in range(len(frames)):
        print(faces.for_frame(i).age)
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.align import (
    ARCFACE_TEMPLATE,
    CROP_SIZE,
    chip_windows,
    oversample,
    sharpness,
    similarity_transform,
    warp_each,
    warp_faces_multi,
)
from models.cydral import (
    AGE_CHIP_SIZE,
    AGE_CLASSES,
    CHIP_OVERSAMPLE,
    CHIP_TEMPLATES,
    GENDER_CHIP_SIZE,
    CydralClassifier,
    expected_age,
)
from models.detection import Detections, FaceDetector
from models.dlib_resnet import CHIP_PADDING as EMBED_CHIP_PADDING
from models.dlib_resnet import CHIP_SIZE as EMBED_CHIP_SIZE
from models.dlib_resnet import EMBEDDING_SIZE, FaceEmbedder, chip_template
from models.errors import ModelSettingsError
from models.genderage import GenderAgeClassifier
from models.genderage import decode as decode_genderage
from models.weights import CLASSIFIERS, DETECTORS, model_path, model_version

__all__ = ["FaceAnalyzer", "FaceBatch", "resolve_device", "AGE_CLASSES"]

log = logging.getLogger(__name__)

# detector -> (score threshold, NMS IoU threshold) used when the caller gives none
DEFAULT_DET_MAX_SIDE = 960  # pixels, longer side of the detector's input
# On CPU the batch goes through upload-to-float, detection and alignment in cache-sized chunks
# and the classifier over chunks of crops. Measured on 2 cores (32 frames 1920x1080, detector
# input 960x540): the whole pipeline took 1.51 s with chunks of 2 frames, 1.59 s with 4, 2.0 s
# with 8; the classifier over 192 crops was about 4x slower in one forward than in chunks of 16.
# On CUDA each step is one call over the whole batch.
CPU_DETECT_CHUNK = 2  # frames per detector forward on CPU
CPU_CLASSIFY_CHUNK = 16  # crops per classifier forward on CPU
BGR_TO_RGB = [2, 1, 0]
# On CUDA the crops are padded (with blank ones) to a multiple of this many faces before the
# classifier: cuDNN prepares its convolutions once per input shape, and a face count that differs
# in every batch made that preparation, not the arithmetic, the bulk of the models' time (H200,
# 63-s 1080p video, cuDNN's v8 API: 16.6 s of models in the pipeline unpadded, 1.5 s padded).
CUDA_FACE_BUCKET = 32
# The 150 px embedding chip is sampled at this many times its size and box-filtered (as the
# Cydral chips are, CHIP_OVERSAMPLE). 1: at 2x and 4x the descriptors of the media photos' 18
# faces (up to 260 px wide) came no closer to dlib's (cosine median 0.9928 at 1x, 2x and 4x) and
# the 150 px chip's alignment cost four and sixteen times as much (docs/models.md)
EMBED_OVERSAMPLE = 1


@dataclass
class FaceBatch:
    """Faces found in a batch of frames, flat over faces (K of them), as numpy arrays.

    frame_index: (K,) int64, index of the frame in the batch; faces are grouped by frame, each
        frame's faces by descending score.
    boxes: (K, 4) float32, x1, y1, x2, y2 in source-frame pixels (not clipped to the frame).
    scores: (K,) float32, detector confidence 0-1.
    landmarks: (K, 5, 2) float32, x, y in source pixels: image-left eye, image-right eye, nose,
        image-left and image-right mouth corner.
    gender_logit: (K,) float32, the classifier's raw log-odds of male (log p_male - log
        p_female), before calibration.
    p_male: (K,) float32, probability that the face is male, 0-1: sigmoid(gender_logit / T)
        with the classifier's ``gender_temperature`` T (models.weights.CLASSIFIERS).
    age: (K,) float32, years: the expectation of ``age_probs`` (Cydral), or InsightFace's
        integer age (0-100).
    age_probs: (K, 81) float32, distribution over the ages in ``AGE_CLASSES`` (0.25, 1, ...,
        80); for InsightFace a one-hot at its age clipped to 0..80.
    face_px: (K,) float32, face size in source pixels: the shorter side of the box.
    sharpness: (K,) float32, variance of the Laplacian of the grey aligned 112x112 crop (grey
        levels squared, counted only where the crop lies inside the frame); low = blurred.
    embedding: (K, 128) float32, dlib's face descriptor of each face (Euclidean distance below
        about 0.6: same person; ``models.dlib_resnet``), or (K, 0) when the analyzer was made
        without ``embeddings``.
    num_frames: number of frames in the batch.
    """

    frame_index: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    gender_logit: np.ndarray
    p_male: np.ndarray
    age: np.ndarray
    age_probs: np.ndarray
    face_px: np.ndarray
    sharpness: np.ndarray
    embedding: np.ndarray
    num_frames: int

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    def for_frame(self, i: int) -> FaceBatch:
        """The faces of frame ``i`` only (frame_index still says ``i``)."""
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame {i} outside a batch of {self.num_frames}")
        rows = self.frame_index == i
        arrays = {f.name: getattr(self, f.name)[rows] for f in fields(self) if f.name != "num_frames"}
        return FaceBatch(**arrays, num_frames=self.num_frames)


# Column layout of the one float32 tensor copied to the host: name -> shape of a face's row
_COLUMNS: dict[str, tuple[int, ...]] = {
    "frame_index": (), "boxes": (4,), "scores": (), "landmarks": (5, 2), "gender_logit": (),
    "p_male": (), "age": (), "age_probs": (len(AGE_CLASSES),), "face_px": (), "sharpness": (),
}  # fmt: skip
_WIDTH = sum(int(np.prod(shape)) for shape in _COLUMNS.values())


def _unpack(packed: np.ndarray, num_frames: int) -> FaceBatch:
    """The FaceBatch of the packed columns; any columns after ``_COLUMNS`` are the embedding."""
    arrays, start = {}, 0
    for name, shape in _COLUMNS.items():
        width = int(np.prod(shape))
        arrays[name] = np.ascontiguousarray(packed[:, start : start + width]).reshape(-1, *shape)
        start += width
    arrays["embedding"] = np.ascontiguousarray(packed[:, start:])
    arrays["frame_index"] = arrays["frame_index"].astype(np.int64)
    return FaceBatch(**arrays, num_frames=num_frames)


class Crops(NamedTuple):
    """A run of faces' aligned crops: ``arcface`` (K, 3, 112, 112) float32 BGR and its
    ``inside`` mask (K, 112, 112); for the Cydral classifier the dlib-style chips ``chips64``
    (K, 3, 64, 64) and ``chips32`` (K, 3, 32, 32) float32 BGR (None otherwise); with embeddings
    dlib's face-recognition chip ``chips150`` (K, 3, 150, 150) float32 BGR (None otherwise)."""

    arcface: torch.Tensor
    inside: torch.Tensor
    chips64: torch.Tensor | None
    chips32: torch.Tensor | None
    chips150: torch.Tensor | None = None


def pad_faces(crops: Crops, multiple: int) -> Crops:
    """The crops padded with blank faces (zeros, outside the frame) to a multiple of ``multiple``."""
    extra = -crops.inside.shape[0] % multiple
    if extra == 0:
        return crops

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, 0) * (t.dim() - 1) + (0, extra))

    return Crops(
        pad(crops.arcface),
        pad(crops.inside),
        None if crops.chips64 is None else pad(crops.chips64),
        None if crops.chips32 is None else pad(crops.chips32),
        None if crops.chips150 is None else pad(crops.chips150),
    )


def _concat_detections(parts: list[Detections]) -> Detections:
    if len(parts) == 1:
        return parts[0]
    return Detections(
        image_index=torch.cat([p.image_index for p in parts]),
        boxes=torch.cat([p.boxes for p in parts]),
        scores=torch.cat([p.scores for p in parts]),
        landmarks=torch.cat([p.landmarks for p in parts]),
    )


def _concat_crops(parts: list[Crops]) -> Crops:
    return Crops(
        torch.cat([p.arcface for p in parts]),
        torch.cat([p.inside for p in parts]),
        _cat_chips([p.chips64 for p in parts]),
        _cat_chips([p.chips32 for p in parts]),
        _cat_chips([p.chips150 for p in parts]),
    )


def _cat_chips(chips: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The parts' chips concatenated; None when the parts carry none (all come from one classifier)."""
    present = [t for t in chips if t is not None]
    return torch.cat(present) if present else None


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; other names as torch spells them. Asking for
    CUDA without it is a settings error, not a silent CPU run."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ModelSettingsError(f"device {device!r} is not a torch device name") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelSettingsError(f"device {device!r} requested but CUDA is not available")
    return resolved


def to_channels_last(net: nn.Module) -> None:
    """Store ``net``'s 4-D weights channels-last, in place."""
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format


def load_detector(name: str, model_dir: str | Path, device: torch.device, half: bool) -> FaceDetector:
    """Build detector ``name`` (a key of DETECTORS) from its weights in ``model_dir``,
    sha256-checked, on ``device`` in float16 when ``half``."""
    if name not in DETECTORS:
        raise ModelSettingsError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    config = DETECTORS[name]
    module, class_name = config.detector.split(":")
    detector_class = getattr(importlib.import_module(module), class_name)
    path = model_path(model_dir, config.weights)
    detector: FaceDetector = detector_class.from_file(path, device=device, half=half)
    to_channels_last(detector.net)
    return detector


class FaceAnalyzer:
    """Face detection, alignment and gender/age for batches of frames.

    Args:
        model_dir: folder holding the weight files (see models.weights.MODELS).
        detector: "retinaface" or "yunet" (default "retinaface").
        device: "auto", "cpu", "cuda" or "cuda:N" (default "auto": CUDA when present).
        half: run the networks in float16, CUDA only; refused on CPU (default False). Measured
            on an H200 at batch 32: only 3-5% faster than fp32, same faces and genders, but where
            two anchors nearly tie another may win, which moved one of 15 reference faces' box
            by 12 px and its age by 8 years.
        det_max_side: resize frames for detection so that the longer side is at most this many
            pixels; None keeps the original size (default 960).
        score_threshold: minimum detector score 0-1 (default None: 0.9 for RetinaFace,
            0.6 for YuNet).
        nms_threshold: NMS IoU threshold (default None: 0.4 for RetinaFace, 0.3 for YuNet).
        classifier: gender/age classifier, "cydral" (public domain) or "insightface"
            (non-commercial licence; a warning is logged) (default "cydral").
        embeddings: also compute each face's 128-D dlib descriptor (``FaceBatch.embedding``),
            from a 150 px chip cut in the same ``grid_sample`` and one more forward pass; off,
            nothing of it is loaded or computed (default False). ``analyze(frames, embed=False)``
            skips it for a batch, and ``embed_faces`` embeds chosen faces of that batch afterwards.

    Attributes: ``device`` (torch.device), ``half`` (bool), ``model_version`` (str naming the
    detector, the classifier and their hashes), ``classifier_config`` (the classifier's entry
    of models.weights.CLASSIFIERS).
    """

    def __init__(
        self,
        model_dir: str | Path,
        detector: str = "retinaface",
        device: str | torch.device = "auto",
        half: bool = False,
        det_max_side: int | None = DEFAULT_DET_MAX_SIDE,
        score_threshold: float | None = None,
        nms_threshold: float | None = None,
        classifier: str = "cydral",
        embeddings: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.half = half
        if self.half and self.device.type != "cuda":
            raise ModelSettingsError("half precision needs a CUDA device")
        if det_max_side is not None and det_max_side < 32:
            raise ModelSettingsError(f"det_max_side {det_max_side} too small (at least 32 pixels)")
        if detector not in DETECTORS:
            raise ModelSettingsError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
        config = DETECTORS[detector]
        self.score_threshold = config.score_threshold if score_threshold is None else score_threshold
        self.nms_threshold = config.nms_threshold if nms_threshold is None else nms_threshold
        self.det_max_side = det_max_side
        if classifier not in CLASSIFIERS:
            raise ModelSettingsError(f"unknown classifier {classifier!r}; choose one of {', '.join(CLASSIFIERS)}")
        self.classifier_config = CLASSIFIERS[classifier]
        if self.classifier_config.licence_warning:
            log.warning("classifier %s: %s", classifier, self.classifier_config.licence_warning)
        self.detector = load_detector(detector, model_dir, self.device, self.half)
        self.classifier: CydralClassifier | GenderAgeClassifier
        if classifier == "cydral":
            self.classifier = CydralClassifier.from_files(
                model_path(model_dir, "cydral_gender"), model_path(model_dir, "cydral_age"), self.device, self.half
            )
            nets = [self.classifier.gender_net, self.classifier.age_net]
        else:
            self.classifier = GenderAgeClassifier.from_file(model_path(model_dir, "genderage"), self.device, self.half)
            nets = [self.classifier.net]
        # Frames arrive as N x H x W x 3, i.e. channels-last: the nets take them so without reordering
        # (on 2 CPU cores channels-last nets and contiguous ones both did 23.3 frames/s)
        self.embedder: FaceEmbedder | None = None
        if embeddings:
            self.embedder = FaceEmbedder.from_file(
                model_path(model_dir, "dlib_face_recognition"), self.device, self.half
            )
            nets.append(self.embedder.net)
            self._embed_template = chip_template(CHIP_TEMPLATES[detector], EMBED_CHIP_SIZE, EMBED_CHIP_PADDING).to(
                self.device
            )
        for net in nets:
            to_channels_last(net)
        self.model_version = model_version(detector, classifier)
        self._template = torch.tensor(ARCFACE_TEMPLATE, device=self.device)
        self._chip_template = torch.tensor(CHIP_TEMPLATES[detector], device=self.device)
        self._float_buffer: torch.Tensor | None = None  # CPU only, see to_float
        log.info(
            "face analyzer %s on %s (%s), detector input <= %s px, score > %s",
            self.model_version, self.device, "float16" if self.half else "float32",
            det_max_side, self.score_threshold,
        )  # fmt: skip

    @torch.inference_mode()
    def analyze(self, frames: np.ndarray | torch.Tensor, embed: bool = True) -> FaceBatch:
        """Faces in a batch of frames.

        Args:
            frames: (N, H, W, 3) uint8 BGR, a numpy array or a torch tensor (on any device;
                one already on the analyzer's device is used in place).
            embed: with ``embeddings``, embed every face (False: ``embedding`` is (K, 0) and
                neither the 150 px chips nor their descriptors are computed).

        Returns:
            A FaceBatch with every face of every frame, in source-frame pixels.
        """
        pixels = self.upload(frames)  # (N, H, W, 3) uint8 on the device
        count = pixels.shape[0]
        if count == 0:
            return _unpack(np.zeros((0, _WIDTH), np.float32), 0)
        chunk = count if self.device.type == "cuda" else CPU_DETECT_CHUNK
        embed = embed and self.embedder is not None
        parts = [self._detect_and_align(pixels[i : i + chunk], i, embed) for i in range(0, count, chunk)]
        detections = _concat_detections([part[0] for part in parts])
        crops = _concat_crops([part[1] for part in parts])
        faces = crops.inside.shape[0]
        if self.device.type == "cuda":
            crops = pad_faces(crops, CUDA_FACE_BUCKET)
        gender_logit, age, age_probs = (values[:faces] for values in self.classify(crops))
        p_male = torch.sigmoid(gender_logit / self.classifier_config.gender_temperature)
        crop_sharpness = sharpness(crops.arcface, crops.inside)[:faces]
        box_size = detections.boxes[:, 2:] - detections.boxes[:, :2]
        embedding = self.embed(crops)[:faces] if embed else p_male.new_zeros(faces, 0)
        packed = torch.cat(
            [
                detections.image_index[:, None].float(),
                detections.boxes,
                detections.scores[:, None],
                detections.landmarks.reshape(-1, 10),
                gender_logit[:, None],
                p_male[:, None],
                age[:, None],
                age_probs,
                box_size.min(dim=1).values[:, None],
                crop_sharpness[:, None],
                embedding,
            ],
            dim=1,
        )
        return _unpack(packed.cpu().numpy(), count)  # the one copy back to the host

    def upload(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Check the frames and move them to the device once: (N, H, W, 3) uint8 BGR; a tensor
        already there is used as it is.

        A plain (pageable) copy: with torch on one CPU thread, as the worker runs it on CUDA,
        32 1080p frames took 23 ms this way on the H200 machine, and 40 ms through a reused
        page-locked buffer (its host-side copy runs on that one thread) or ``pin_memory()``.
        """
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"expected N x H x W x 3 frames, got shape {tuple(frames.shape)}")
        if isinstance(frames, np.ndarray):
            if frames.dtype != np.uint8:
                raise ValueError(f"expected uint8 frames, got {frames.dtype}")
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        elif frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames, got {frames.dtype}")
        return frames.to(self.device)

    def to_float(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, H, W, 3) uint8 -> (n, 3, H, W) float32 0..255 with channels-last memory (one
        conversion, no reordering). On CPU the result lives in a buffer reused by the next call
        of the same shape: large fresh allocations are slow there (page faults on every call)."""
        if self.device.type == "cuda":
            return pixels.permute(0, 3, 1, 2).float()
        if self._float_buffer is None or self._float_buffer.shape != pixels.shape:
            self._float_buffer = torch.empty(pixels.shape, dtype=torch.float32)
        self._float_buffer.copy_(pixels)
        return self._float_buffer.permute(0, 3, 1, 2)

    def _detect_and_align(self, pixels: torch.Tensor, first_frame: int, embed: bool) -> tuple[Detections, Crops]:
        """Detections and crops of a run of frames starting at ``first_frame`` (with ``embed``
        the 150 px chips too)."""
        images = self.to_float(pixels)
        detections = self.detect(images)
        crops = self.align(images, detections, embed)
        if first_frame:
            detections.image_index = detections.image_index + first_frame
        return detections, crops

    def detection_size(self, height: int, width: int) -> tuple[int, int]:
        """Detector input (height, width) for source frames of height x width pixels."""
        longer = max(height, width)
        if self.det_max_side is None or longer <= self.det_max_side:
            return height, width
        scale = self.det_max_side / longer
        return max(1, round(height * scale)), max(1, round(width * scale))

    def detect(self, images: torch.Tensor) -> Detections:
        """(N, 3, H, W) float32 source frames -> Detections in source pixels (float32), in one
        detector forward: resize on the device, float16 when ``half``, map back."""
        height, width = images.shape[-2:]
        det_height, det_width = self.detection_size(height, width)
        batch = images
        if (det_height, det_width) != (height, width):
            batch = F.interpolate(
                images, size=(det_height, det_width), mode="bilinear", antialias=True, align_corners=False
            )
        if self.half:
            batch = batch.half()
        detections = self.detector.detect(batch, self.score_threshold, self.nms_threshold)
        if (det_height, det_width) == (height, width):
            return detections
        return detections.scaled(width / det_width, height / det_height)

    def classify(self, crops: Crops) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gender log-odds of male (K,), age in years (K,) and age distribution (K, 81) over
        ``AGE_CLASSES``, all float32, from the faces' crops; one forward per network on CUDA,
        chunks of CPU_CLASSIFY_CHUNK faces on CPU."""
        chunk = crops.inside.shape[0] if self.device.type == "cuda" else CPU_CLASSIFY_CHUNK
        if isinstance(self.classifier, CydralClassifier):
            assert crops.chips64 is not None and crops.chips32 is not None
            return self._classify_cydral(crops.chips32[:, BGR_TO_RGB], crops.chips64[:, BGR_TO_RGB], max(chunk, 1))
        rgb = crops.arcface[:, BGR_TO_RGB]
        outputs = [self.classifier.forward(part) for part in torch.split(rgb, max(chunk, 1))]
        if not outputs:
            return rgb.new_zeros(0), rgb.new_zeros(0), rgb.new_zeros(0, len(AGE_CLASSES))
        raw = torch.cat(outputs)
        _, age = decode_genderage(raw)
        gender_logit = raw[:, 1] - raw[:, 0]
        # One path downstream: the integer age as a one-hot distribution over AGE_CLASSES
        # (class i is age i for i >= 1, class 0 is 0.25 years)
        age_probs = F.one_hot(age.clamp(0, len(AGE_CLASSES) - 1), len(AGE_CLASSES)).float()
        return gender_logit, age.float(), age_probs

    def _classify_cydral(
        self, chips32: torch.Tensor, chips64: torch.Tensor, chunk: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """RGB chips (K, 3, 32, 32) and (K, 3, 64, 64) -> gender_logit, age, age_probs; with
        ``flip`` each chip is averaged with its mirror image (gender in log-odds, age in
        probabilities)."""
        assert isinstance(self.classifier, CydralClassifier)
        flip = self.classifier_config.flip
        logits, probs = [], []
        for small, large in zip(torch.split(chips32, chunk), torch.split(chips64, chunk)):
            if flip:
                small, large = torch.cat([small, small.flip(3)]), torch.cat([large, large.flip(3)])
            gender = self.classifier.gender_logits(small)
            logit = gender[:, 1] - gender[:, 0]
            prob = self.classifier.age_logits(large).softmax(dim=1)
            if flip:
                logit = logit.view(2, -1).mean(dim=0)
                prob = prob.view(2, -1, prob.shape[1]).mean(dim=0)
            logits.append(logit)
            probs.append(prob)
        if not logits:
            return chips64.new_zeros(0), chips64.new_zeros(0), chips64.new_zeros(0, len(AGE_CLASSES))
        age_probs = torch.cat(probs)
        return torch.cat(logits), expected_age(age_probs), age_probs

    def embed(self, crops: Crops) -> torch.Tensor:
        """(K, 128) float32 dlib descriptors of the faces' 150 px chips; one forward on CUDA,
        chunks of CPU_CLASSIFY_CHUNK faces on CPU."""
        assert crops.chips150 is not None
        return self.embed_chips(crops.chips150)

    def embed_chips(self, chips150: torch.Tensor) -> torch.Tensor:
        """(K, 128) float32 descriptors of (K, 3, 150, 150) BGR chips (see ``embed``)."""
        assert self.embedder is not None
        rgb = chips150[:, BGR_TO_RGB]
        chunk = rgb.shape[0] if self.device.type == "cuda" else CPU_CLASSIFY_CHUNK
        outputs = [self.embedder.embed(part) for part in torch.split(rgb, max(chunk, 1))]
        return torch.cat(outputs) if outputs else rgb.new_zeros(0, EMBEDDING_SIZE)

    @torch.inference_mode()
    def cut_chips(self, pixels: torch.Tensor, frame_index: np.ndarray, landmarks: np.ndarray) -> torch.Tensor:
        """(n, 3, 150, 150) float32 BGR embedding chips of n chosen faces of a batch ``analyze``
        has seen, on the device, cut as ``analyze`` cuts them (the same template, bilinear, zeros
        outside the frame), so that ``describe`` gives each the descriptor ``analyze`` would, to
        float rounding.

        Args:
            pixels: the batch's frames on the device, as ``upload`` returned them.
            frame_index: (n,) each face's frame in the batch; landmarks: (n, 5, 2) its landmarks
                in source pixels (both as the FaceBatch has them).

        Each chip is sampled from the window of its frame that it reads (``chip_windows``), not
        from the whole frame: converting whole 1080p frames to float cost more than the net.
        """
        count = len(frame_index)
        if count == 0:
            return torch.zeros(0, 3, EMBED_CHIP_SIZE, EMBED_CHIP_SIZE, device=self.device)
        marks = torch.as_tensor(np.asarray(landmarks, np.float32).reshape(-1, 5, 2), device=self.device)
        matrices = oversample(similarity_transform(marks, self._embed_template), EMBED_OVERSAMPLE)
        size = EMBED_CHIP_SIZE * EMBED_OVERSAMPLE
        windows = chip_windows(matrices, size, pixels.shape[2], pixels.shape[1])
        height = int((windows[:, 3] - windows[:, 1]).max())
        width = int((windows[:, 2] - windows[:, 0]).max())
        crops = torch.zeros(count, height, width, 3, dtype=pixels.dtype, device=pixels.device)
        for i, (x0, y0, x1, y1) in enumerate(windows.tolist()):
            crops[i, : y1 - y0, : x1 - x0] = pixels[int(frame_index[i]), y0:y1, x0:x1]
        # frame pixel p is window pixel p - (x0, y0): shift each map's translation
        origin = torch.as_tensor(windows[:, :2], dtype=torch.float32, device=self.device)
        shifted = matrices.clone()
        shifted[:, :, 2] += (matrices[:, :, :2] @ origin[:, :, None])[:, :, 0]
        images = crops.permute(0, 3, 1, 2).float()
        return F.avg_pool2d(warp_each(images, shifted, size), EMBED_OVERSAMPLE)

    @torch.inference_mode()
    def describe(self, chips150: torch.Tensor) -> np.ndarray:
        """(n, 128) float32 host descriptors of (n, 3, 150, 150) BGR chips (``cut_chips``); on CUDA
        padded to a multiple of CUDA_FACE_BUCKET first, as the classifier's input."""
        count = chips150.shape[0]
        if self.device.type == "cuda":
            chips150 = F.pad(chips150, (0, 0, 0, 0, 0, 0, 0, -count % CUDA_FACE_BUCKET))
        return self.embed_chips(chips150.to(self.device))[:count].float().cpu().numpy()

    def align(self, images: torch.Tensor, detections: Detections, embed: bool = True) -> Crops:
        """All faces' crops from the full-resolution frames in one ``grid_sample``: the 112 px
        ArcFace crop (sharpness, InsightFace) and its inside mask, for Cydral the 64 and 32 px
        chips (each sampled at CHIP_OVERSAMPLE x its size and box-filtered), with embeddings the
        150 px chip (at EMBED_OVERSAMPLE x)."""
        kinds = [(similarity_transform(detections.landmarks, self._template), CROP_SIZE)]
        cydral = isinstance(self.classifier, CydralClassifier)
        if cydral:
            chip64 = similarity_transform(detections.landmarks, self._chip_template)
            # dlib's chips of both sizes span the same square: pixel i of the 32 px chip lies where
            # pixel i * 63 / 31 of the 64 px chip does
            chip32 = chip64 * ((GENDER_CHIP_SIZE - 1) / (AGE_CHIP_SIZE - 1))
            for matrices, size in ((chip64, AGE_CHIP_SIZE), (chip32, GENDER_CHIP_SIZE)):
                kinds.append((oversample(matrices, CHIP_OVERSAMPLE), size * CHIP_OVERSAMPLE))
        embed = embed and self.embedder is not None
        if embed:
            chip150 = similarity_transform(detections.landmarks, self._embed_template)
            kinds.append((oversample(chip150, EMBED_OVERSAMPLE), EMBED_CHIP_SIZE * EMBED_OVERSAMPLE))
        sampled = warp_faces_multi(images, detections.image_index, kinds)
        arcface, inside = sampled[0]
        chips150 = None
        if embed:
            chips150 = F.avg_pool2d(sampled.pop()[0], EMBED_OVERSAMPLE)
        if not cydral:
            return Crops(arcface, inside, None, None, chips150)
        chips64, chips32 = (F.avg_pool2d(crops, CHIP_OVERSAMPLE) for crops, _ in sampled[1:])
        return Crops(arcface, inside, chips64, chips32, chips150)
