"""FaceAnalyzer end to end: the MANIFEST's gender/age results (InsightFace), the Cydral default,
batch invariance, settings, CUDA."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from analyzer import errors
from models.align import sharpness
from models.cydral import AGE_CLASSES
from models.errors import ModelSettingsError, WeightsError
from models.face_analyzer import FaceAnalyzer, FaceBatch, pad_faces
from models.nms import box_iou
from models.weights import CLASSIFIERS, model_version
from tests.models.conftest import UTKFACE_DIR, read_bgr, weights_dir

AGE_TOLERANCE = 1  # years
BOX_TOLERANCE = 0.05  # pixels, batch vs alone
P_MALE_TOLERANCE = 1e-3
CUDA_BOX_TOLERANCE = 1.0  # pixels, CUDA fp32 (TF32 convolutions) vs CPU

# MANIFEST (models section 3, media tables): (male?, age) per face
PHOTO_CASES = {
    "obama.jpg": [(True, 61)],
    "two_people.jpg": [(True, 54), (True, 68)],
    "insightface_t1.jpg": [(True, 36), (True, 27), (True, 24), (False, 24), (False, 26), (False, 24)],
}
UTKFACE_CASES = {  # file -> (male?, age) the model gave (not the label)
    "2_0_2_20161219152009555.jpg.chip.jpg": (False, 1),
    "3_1_0_20170109192006973.jpg.chip.jpg": (False, 1),
    "8_0_0_20170110220143955.jpg.chip.jpg": (False, 15),
    "9_1_2_20170104020210475.jpg.chip.jpg": (False, 9),
    "16_1_0_20170103201213287.jpg.chip.jpg": (False, 28),
    "35_0_0_20170104183524965.jpg.chip.jpg": (True, 57),
    "52_1_0_20170110141236056.jpg.chip.jpg": (False, 59),
    "78_0_0_20170111210105923.jpg.chip.jpg": (True, 78),
    "85_1_0_20170110183455199.jpg.chip.jpg": (True, 82),
}
BATCH_IMAGES = ["obama.jpg", "two_people.jpg", "insightface_t1.jpg", "facenet_pytorch_multiface.jpg"]


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Fit ``image`` into a black size x size square (top-left), keeping its aspect ratio."""
    scale = size / max(image.shape[:2])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas


def assert_same_gender_and_age(faces: FaceBatch, expected: list[tuple[bool, int]]) -> None:
    """The multiset of (gender, age) agrees, ages within AGE_TOLERANCE, whatever the order."""
    assert len(faces) == len(expected)
    found = sorted(zip((faces.p_male > 0.5).tolist(), faces.age.tolist()))
    for (male, age), (expected_male, expected_age) in zip(found, sorted(expected)):
        assert male == expected_male and abs(age - expected_age) <= AGE_TOLERANCE, (found, expected)


def assert_same_faces(a: FaceBatch, b: FaceBatch) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.frame_index, b.frame_index)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=BOX_TOLERANCE)
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=BOX_TOLERANCE)
    np.testing.assert_allclose(a.p_male, b.p_male, atol=P_MALE_TOLERANCE)
    assert np.abs(a.age - b.age).max(initial=0) <= AGE_TOLERANCE


def by_position(faces: FaceBatch) -> FaceBatch:
    """The faces ordered by frame, then left edge (scores that nearly tie may swap order)."""
    order = np.lexsort((faces.boxes[:, 0], faces.frame_index))
    arrays = {f.name: getattr(faces, f.name)[order] for f in dataclasses.fields(faces) if f.name != "num_frames"}
    return FaceBatch(**arrays, num_frames=faces.num_frames)


@pytest.fixture(scope="module")
def default_analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(weights_dir(), device="cpu")


@pytest.mark.parametrize("name", sorted(PHOTO_CASES))
def test_photos_match_the_manifest(full_size_analyzer: FaceAnalyzer, name: str) -> None:
    assert_same_gender_and_age(full_size_analyzer.analyze(read_bgr(name)[None]), PHOTO_CASES[name])


def test_biden_main_face(full_size_analyzer: FaceAnalyzer) -> None:
    faces = full_size_analyzer.analyze(read_bgr("biden.jpg")[None])
    assert len(faces) == 2  # main face and one in the background (score 0.861)
    assert faces.scores[0] > 0.99 and abs(faces.scores[1] - 0.861) < 0.01
    assert faces.p_male[0] > 0.5 and abs(int(faces.age[0]) - 60) <= AGE_TOLERANCE


def test_obama_box_landmarks_and_size(full_size_analyzer: FaceAnalyzer) -> None:
    faces = full_size_analyzer.analyze(read_bgr("obama.jpg")[None])
    np.testing.assert_allclose(faces.boxes[0], [362, 104, 621, 415], atol=2)
    np.testing.assert_allclose(faces.landmarks[0], [[434, 210], [552, 211], [492, 275], [435, 315], [546, 316]], atol=2)
    assert faces.face_px[0] == pytest.approx(min(621 - 362, 415 - 104), abs=2)
    assert faces.sharpness[0] > 100


def test_utkface_rows_in_one_batch(full_size_analyzer: FaceAnalyzer) -> None:
    names = sorted(UTKFACE_CASES)
    frames = np.stack([read_bgr(UTKFACE_DIR / name) for name in names])  # all 200 x 200
    faces = full_size_analyzer.analyze(frames)
    assert faces.frame_index.tolist() == list(range(len(names)))
    for i, name in enumerate(names):
        assert_same_gender_and_age(faces.for_frame(i), [UTKFACE_CASES[name]])


def test_batch_equals_each_image_alone(default_analyzer: FaceAnalyzer) -> None:
    frames = np.stack([letterbox(read_bgr(name), 640) for name in BATCH_IMAGES])
    together = default_analyzer.analyze(frames)
    assert len(together) >= 12
    for i in range(len(frames)):
        alone = default_analyzer.analyze(frames[i : i + 1])
        alone.frame_index[:] = i
        assert_same_faces(together.for_frame(i), alone)


def test_batch_invariance_with_resizing() -> None:
    """Frames shrunk for detection (1280 -> 480 px): boxes come back in source pixels."""
    analyzer = FaceAnalyzer(weights_dir(), device="cpu", det_max_side=480, score_threshold=0.8)
    frames = np.stack([cv2.resize(read_bgr(name), (1280, 720)) for name in BATCH_IMAGES[1:]])
    together = analyzer.analyze(frames)
    for i in range(len(frames)):
        alone = analyzer.analyze(frames[i : i + 1])
        alone.frame_index[:] = i
        assert_same_faces(together.for_frame(i), alone)
    two = together.for_frame(0)  # two_people.jpg, 1126 x 661 -> 1280 x 720
    assert len(two) == 2
    expected_x1 = np.array([236.92, 786.36]) * 1280 / 1126
    np.testing.assert_allclose(np.sort(two.boxes[:, 0]), expected_x1, atol=8)


def test_tensor_input_equals_numpy(default_analyzer: FaceAnalyzer) -> None:
    frames = np.stack([read_bgr("two_people.jpg")] * 2)
    from_numpy = default_analyzer.analyze(frames)
    from_tensor = default_analyzer.analyze(torch.from_numpy(frames))
    assert_same_faces(from_numpy, from_tensor)
    assert from_numpy.num_frames == 2 and len(from_numpy.for_frame(1)) == 2


def test_no_faces(default_analyzer: FaceAnalyzer) -> None:
    faces = default_analyzer.analyze(np.zeros((3, 120, 160, 3), np.uint8))
    assert len(faces) == 0 and faces.num_frames == 3
    assert faces.boxes.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)
    assert faces.age.dtype == np.float32 and faces.frame_index.dtype == np.int64
    assert faces.age_probs.shape == (0, 81) and faces.gender_logit.shape == (0,)
    assert len(faces.for_frame(2)) == 0
    with pytest.raises(IndexError):
        faces.for_frame(3)
    assert len(default_analyzer.analyze(np.zeros((0, 120, 160, 3), np.uint8))) == 0


def test_bad_frames_are_refused(default_analyzer: FaceAnalyzer) -> None:
    with pytest.raises(ValueError, match="uint8"):
        default_analyzer.analyze(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="N x H x W x 3"):
        default_analyzer.analyze(np.zeros((32, 32, 3), np.uint8))


def test_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelSettingsError, match="detector"):
        FaceAnalyzer(weights_dir(), detector="mtcnn", device="cpu")
    with pytest.raises(ModelSettingsError, match="half"):
        FaceAnalyzer(weights_dir(), device="cpu", half=True)
    with pytest.raises(WeightsError, match="analyzer models fetch"):
        FaceAnalyzer(tmp_path, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelSettingsError, match="CUDA"):
            FaceAnalyzer(weights_dir(), device="cuda")


def test_the_analyzer_maps_model_settings_to_exit_2() -> None:
    with pytest.raises(errors.SettingsError, match="detector") as caught, errors.model_errors():
        FaceAnalyzer(weights_dir(), detector="mtcnn", device="cpu")
    assert caught.value.exit_code is errors.ExitCode.BAD_SETTINGS


def test_model_version_and_device(default_analyzer: FaceAnalyzer) -> None:
    assert default_analyzer.model_version == model_version("retinaface", "cydral")
    assert default_analyzer.model_version.startswith("retinaface-ed6fa7d4+cydral-")
    assert default_analyzer.device == torch.device("cpu") and default_analyzer.half is False
    auto = FaceAnalyzer(weights_dir())
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_yunet_detector_is_wired() -> None:
    analyzer = FaceAnalyzer(weights_dir(), detector="yunet", device="cpu", det_max_side=None)
    assert analyzer.model_version.startswith("yunet-9c7c9e14+")
    faces = analyzer.analyze(read_bgr("obama.jpg")[None])
    assert len(faces) == 1 and faces.p_male[0] > 0.5
    assert abs(faces.scores[0] - 0.961) < 0.01


def test_cydral_outputs_follow_the_contract(default_analyzer: FaceAnalyzer) -> None:
    """gender_logit is the raw log-odds, p_male its calibrated sigmoid, age the expectation of
    age_probs over AGE_CLASSES; Obama is a confident male (the net says 44 years)."""
    faces = default_analyzer.analyze(read_bgr("obama.jpg")[None])
    assert len(faces) == 1
    temperature = CLASSIFIERS["cydral"].gender_temperature
    np.testing.assert_allclose(faces.p_male, 1 / (1 + np.exp(-faces.gender_logit / temperature)), rtol=1e-5)
    np.testing.assert_allclose(faces.age_probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(faces.age, faces.age_probs @ np.array(AGE_CLASSES, np.float32), rtol=1e-5)
    assert faces.gender_logit[0] > 3 and 40 <= faces.age[0] <= 50, (faces.gender_logit, faces.age)


def test_insightface_is_opt_in_with_a_licence_warning(
    full_size_analyzer: FaceAnalyzer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="models.face_analyzer"):
        analyzer = FaceAnalyzer(weights_dir(), device="cpu", classifier="insightface")
    assert "NON-COMMERCIAL" in caplog.text
    assert analyzer.model_version.startswith("retinaface-ed6fa7d4+insightface-")
    assert analyzer.model_version != model_version("retinaface", "cydral")
    faces = full_size_analyzer.analyze(read_bgr("obama.jpg")[None])
    assert faces.age[0] == 61 and faces.age_probs[0].argmax() == 61 and faces.age_probs[0].sum() == 1
    with pytest.raises(ModelSettingsError, match="classifier"):
        FaceAnalyzer(weights_dir(), device="cpu", classifier="dlib")


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("detector", ["retinaface", "yunet"])
def test_cuda_half_finds_the_same_faces_and_genders(detector: str) -> None:
    """CUDA fp32 matches CPU closely. fp16 finds the same faces with the same genders, but
    where two anchors nearly tie another one may win: measured on an H200, one RetinaFace box
    of 15 moved 12 px and its age changed by 8 years, so fp16 ages are not compared."""
    frames = np.stack([letterbox(read_bgr(name), 960) for name in BATCH_IMAGES])
    reference = FaceAnalyzer(weights_dir(), detector=detector, device="cpu").analyze(frames)
    fp32 = FaceAnalyzer(weights_dir(), detector=detector, device="cuda", half=False).analyze(frames)
    fp16 = FaceAnalyzer(weights_dir(), detector=detector, device="cuda", half=True).analyze(frames)
    reference, fp32, fp16 = (by_position(r) for r in (reference, fp32, fp16))
    for result in (fp32, fp16):
        assert len(result) == len(reference)
        np.testing.assert_array_equal(result.frame_index, reference.frame_index)
        overlap = box_iou(torch.from_numpy(result.boxes), torch.from_numpy(reference.boxes)).diagonal()
        assert overlap.min() > 0.8, overlap
        np.testing.assert_array_equal(result.p_male > 0.5, reference.p_male > 0.5)
    np.testing.assert_allclose(fp32.boxes, reference.boxes, atol=CUDA_BOX_TOLERANCE)
    np.testing.assert_allclose(fp32.p_male, reference.p_male, atol=0.02)
    assert np.abs(fp32.age - reference.age).max(initial=0) <= AGE_TOLERANCE


@pytest.mark.gpu
@requires_cuda
def test_cuda_frames_already_on_the_device() -> None:
    analyzer = FaceAnalyzer(weights_dir(), device="cuda", half=True)
    assert analyzer.half is True
    frames = np.stack([read_bgr("two_people.jpg")] * 3)
    on_host = analyzer.analyze(frames)
    on_device = analyzer.analyze(torch.from_numpy(frames).cuda())
    assert_same_faces(on_host, on_device)
    assert len(on_device.for_frame(2)) == 2


def test_blank_padding_leaves_every_real_face_as_it_was(default_analyzer: FaceAnalyzer) -> None:
    """CUDA pads the crops to CUDA_FACE_BUCKET faces; the real faces' answers must not change."""
    frames = torch.from_numpy(np.stack([letterbox(read_bgr(name), 640) for name in BATCH_IMAGES]))
    images = default_analyzer.to_float(frames)
    crops = default_analyzer.align(images, default_analyzer.detect(images))
    count = crops.inside.shape[0]
    padded = pad_faces(crops, 32)
    assert padded.inside.shape[0] % 32 == 0 and padded.inside.shape[0] > count
    assert not padded.inside[count:].any()
    assert all(t is None or t.shape[0] == padded.inside.shape[0] for t in padded)
    for exact, with_blanks in zip(default_analyzer.classify(crops), default_analyzer.classify(padded)):
        torch.testing.assert_close(with_blanks[:count], exact)
    torch.testing.assert_close(sharpness(padded.arcface, padded.inside)[:count], sharpness(crops.arcface, crops.inside))
