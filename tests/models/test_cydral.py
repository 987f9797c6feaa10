"""Cydral gender and age nets: parity with onnxruntime on real chips, batch invariance, weights
checks, fp16 on CUDA, and accuracy on the evaluation set's held-out half with our own chips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyzer.evaluation import evalset
from models.cydral import AGE_CLASSES, CydralClassifier, expected_age
from models.errors import WeightsError
from models.face_analyzer import FaceAnalyzer
from tests.models.conftest import MODELS_DIR, SHARED, weights_dir

ort = pytest.importorskip("onnxruntime")

EVAL_DIR = SHARED / "data" / "utkface_eval"
PARITY_TOLERANCE = 1e-4  # probabilities, float32 port vs onnxruntime on the same chips
MEAN_RGB = np.array([122.782, 117.001, 104.298], np.float32)
# fp16 on CUDA vs fp32 on CPU (stated, not measured on this machine: it has no GPU)
HALF_P_MALE_TOLERANCE = 0.02
HALF_AGE_TOLERANCE = 1.0  # years


def gender_path():
    return weights_dir() / "cydral_gender_v1.pth"


def age_path():
    return weights_dir() / "cydral_age_v1.pth"


@pytest.fixture(scope="module")
def classifier() -> CydralClassifier:
    return CydralClassifier.from_files(gender_path(), age_path())


@pytest.fixture(scope="module")
def chips() -> tuple[torch.Tensor, torch.Tensor]:
    """Real chips of 12 held-out evaluation faces, cut by FaceAnalyzer (RGB float 0..255):
    (12, 3, 32, 32) and (12, 3, 64, 64)."""
    import cv2

    if not EVAL_DIR.is_dir():
        pytest.skip(f"{EVAL_DIR} not present")
    faces = evalset.split(evalset.load(EVAL_DIR))[1][::53][:12]
    analyzer = FaceAnalyzer(weights_dir(), device="cpu")
    frames = torch.from_numpy(np.stack([cv2.imread(str(f.path)) for f in faces])).permute(0, 3, 1, 2).float()
    detections = analyzer.detect(frames)
    first = [int(torch.nonzero(detections.image_index == i)[0]) for i in range(len(faces))]
    detections.image_index, detections.landmarks = detections.image_index[first], detections.landmarks[first]
    crops = analyzer.align(frames, detections)
    return crops.chips32[:, [2, 1, 0]].round(), crops.chips64[:, [2, 1, 0]].round()  # as uint8 chips would be


def onnx_probabilities(name: str, chips_rgb: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(MODELS_DIR / "cydral" / f"{name}-v1.onnx"), providers=["CPUExecutionProvider"])
    images = (chips_rgb.permute(0, 2, 3, 1).numpy() - MEAN_RGB) / np.float32(256)
    return session.run(None, {"images": np.ascontiguousarray(images.transpose(0, 3, 1, 2))})[0]


def test_gender_matches_onnxruntime(classifier: CydralClassifier, chips) -> None:
    chips32, _ = chips
    expected = onnx_probabilities("gender", chips32)
    actual = classifier.gender_logits(chips32).softmax(dim=1).numpy()
    assert np.abs(actual - expected).max() < PARITY_TOLERANCE
    assert 0 < expected[:, 1].round().sum() < len(expected)  # both genders among the chips


def test_age_matches_onnxruntime(classifier: CydralClassifier, chips) -> None:
    _, chips64 = chips
    expected = onnx_probabilities("age", chips64)
    probs = classifier.age_logits(chips64).softmax(dim=1)
    assert np.abs(probs.numpy() - expected).max() < PARITY_TOLERANCE
    ages = expected @ np.array(AGE_CLASSES, np.float32)
    np.testing.assert_allclose(expected_age(probs).numpy(), ages, atol=1e-2)
    assert ages.max() - ages.min() > 20  # the chips span ages


def test_predict_contract_and_batch_invariance(classifier: CydralClassifier, chips) -> None:
    chips32, chips64 = chips
    logit, probs = classifier.predict(chips32, chips64)
    assert logit.shape == (12,) and probs.shape == (12, len(AGE_CLASSES)) and logit.dtype == torch.float32
    softmax = classifier.gender_logits(chips32).softmax(dim=1)
    torch.testing.assert_close(logit, torch.log(softmax[:, 1]) - torch.log(softmax[:, 0]), atol=1e-4, rtol=1e-4)
    for i in (0, 5, 11):
        alone_logit, alone_probs = classifier.predict(chips32[i : i + 1], chips64[i : i + 1])
        torch.testing.assert_close(alone_logit[0], logit[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone_probs[0], probs[i], atol=1e-6, rtol=1e-5)
    empty_logit, empty_probs = classifier.predict(torch.zeros(0, 3, 32, 32), torch.zeros(0, 3, 64, 64))
    assert empty_logit.shape == (0,) and empty_probs.shape == (0, len(AGE_CLASSES))


def test_a_corrupt_weights_file_is_refused(tmp_path) -> None:
    corrupt = tmp_path / "cydral_age_v1.pth"
    data = bytearray(age_path().read_bytes())
    data[len(data) // 3] ^= 0x01
    corrupt.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt"):
        CydralClassifier.from_files(gender_path(), corrupt)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_matches_cpu(classifier: CydralClassifier, chips) -> None:
    chips32, chips64 = chips
    logit, probs = classifier.predict(chips32, chips64)
    half = CydralClassifier.from_files(gender_path(), age_path(), device="cuda", half=True)
    half_logit, half_probs = half.predict(chips32.cuda(), chips64.cuda())
    p_male, half_p_male = torch.sigmoid(logit), torch.sigmoid(half_logit.cpu())
    assert (p_male - half_p_male).abs().max() < HALF_P_MALE_TOLERANCE
    assert (expected_age(probs) - expected_age(half_probs.cpu())).abs().max() < HALF_AGE_TOLERANCE


# Held-out half, every 8th face (80 faces): floors a few faces under what this subset measured
# (RetinaFace / YuNet: gender 0.900 / 0.913, at 80 % coverage 1.0 / 0.984, age MAE 7.1 / 7.4;
# the whole half in docs/models.md)
FLOOR_GENDER = 0.86
FLOOR_GENDER_AT_80 = 0.94
CEILING_AGE_MAE = 8.0


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["retinaface", "yunet"])
def test_held_out_accuracy_with_our_chips(detector: str) -> None:
    """Our landmarks -> fitted chip template -> Cydral nets, as FaceAnalyzer ships them, on
    evaluation faces never used to fit the template."""
    import cv2

    if not EVAL_DIR.is_dir():
        pytest.skip(f"{EVAL_DIR} not present")
    faces = evalset.split(evalset.load(EVAL_DIR))[1][::8]
    analyzer = FaceAnalyzer(weights_dir(), detector=detector, device="cpu")
    logits, ages, truth_male, truth_age = [], [], [], []
    for start in range(0, len(faces), 32):
        chunk = faces[start : start + 32]
        found = analyzer.analyze(np.stack([cv2.imread(str(f.path)) for f in chunk]))
        for i, face in enumerate(chunk):
            mine = found.for_frame(i)
            if len(mine):
                best = int(np.argmax(mine.scores))
                logits.append(mine.gender_logit[best])
                ages.append(mine.age[best])
                truth_male.append(face.is_male)
                truth_age.append(face.age)
    logit, male = np.array(logits), np.array(truth_male)
    right = (logit > 0) == male
    confident = right[np.argsort(-np.abs(logit), kind="stable")[: int(0.8 * len(right))]]
    mae = np.abs(np.array(ages) - np.array(truth_age)).mean()
    assert len(right) >= len(faces) - 2
    assert right.mean() >= FLOOR_GENDER and confident.mean() >= FLOOR_GENDER_AT_80 and mae <= CEILING_AGE_MAE, (
        right.mean(),
        confident.mean(),
        mae,
    )
