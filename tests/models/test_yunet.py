"""YuNet-n port: strict load, raw outputs against onnxruntime, detections against the MANIFEST.

Real weights and images from ../shared (``ANALYZER_SHARED_DIR``); onnxruntime runs the
published ONNX export of the same checkpoint as the reference.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.detection import Detections
from models.errors import WeightsError
from models.nms import box_iou
from models.yunet import OUTPUT_NAMES, YuNet, YuNetDetector, load_yunet, pad_to_multiple

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("ANALYZER_SHARED_DIR", REPO_ROOT.parent / "shared"))
WEIGHTS = SHARED_DIR / "models" / "yunet_n.pth"
ONNX_MODEL = SHARED_DIR / "models" / "yunet_n_dynamic.onnx"
MEDIA = SHARED_DIR / "media"

SCORE_THRESHOLD = 0.6  # the MANIFEST's settings
NMS_THRESHOLD = 0.3
RAW_TOLERANCE = 1e-4  # max abs difference of any raw output vs onnxruntime
PIXEL_TOLERANCE = 2.0

# MANIFEST section 2a: faces found by the ONNX model at threshold 0.6, NMS 0.3
EXPECTED_FACES = {
    "obama.jpg": 1,
    "two_people.jpg": 2,
    "facenet_pytorch_multiface.jpg": 6,
    "insightface_t1.jpg": 6,
}
OBAMA_SCORE = 0.961
OBAMA_BOX_XYWH = (377, 73, 227, 357)
OBAMA_LANDMARKS = ((442, 210), (555, 208), (506, 278), (445, 323), (557, 320))


def read_bgr(name: str) -> torch.Tensor:
    """(1, 3, H, W) float32 BGR 0..255 from a file in the shared media folder."""
    image = cv2.imread(str(MEDIA / name), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {MEDIA / name}"
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


def canvas_batch(names: list[str]) -> torch.Tensor:
    """The images on zero canvases of one common size (top-left aligned): (N, 3, H, W)."""
    images = [read_bgr(name) for name in names]
    height = max(image.shape[2] for image in images)
    width = max(image.shape[3] for image in images)
    batch = torch.zeros(len(images), 3, height, width)
    for index, image in enumerate(images):
        batch[index, :, : image.shape[2], : image.shape[3]] = image[0]
    return batch


def for_image(detections: Detections, index: int) -> Detections:
    mask = detections.image_index == index
    return Detections(
        image_index=detections.image_index[mask],
        boxes=detections.boxes[mask],
        scores=detections.scores[mask],
        landmarks=detections.landmarks[mask],
    )


@pytest.fixture(scope="module")
def net() -> YuNet:
    return load_yunet(WEIGHTS)


@pytest.fixture(scope="module")
def detector(net: YuNet) -> YuNetDetector:
    return YuNetDetector(net)


@pytest.fixture(scope="module")
def onnx_session():
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(ONNX_MODEL), options, providers=["CPUExecutionProvider"])


def assert_raw_outputs_match(net: YuNet, onnx_session, batch: torch.Tensor) -> None:
    reference = onnx_session.run(list(OUTPUT_NAMES), {"input": batch.numpy()})
    with torch.inference_mode():
        outputs = net(batch)
    assert len(outputs) == len(OUTPUT_NAMES)
    for name, ours, theirs in zip(OUTPUT_NAMES, outputs, reference):
        assert tuple(ours.shape) == theirs.shape, name
        difference = np.abs(ours.numpy() - theirs).max()
        assert difference < RAW_TOLERANCE, f"{name}: max abs difference {difference:.2e}"


# --- loading -------------------------------------------------------------------------------


def test_checkpoint_loads_strictly_into_the_port(net: YuNet) -> None:
    checkpoint = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert set(net.state_dict()) == set(checkpoint["state_dict"])
    assert sum(p.numel() for p in net.parameters()) == 75_856  # the README's YuNet_n count
    assert not net.training


def test_unusable_weights_raise_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_yunet(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot be read"):
        load_yunet(garbage)
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)["state_dict"]
    state.pop("bbox_head.multi_level_kps.2.conv2.bias")
    truncated = tmp_path / "truncated.pth"
    torch.save({"state_dict": state}, truncated)
    with pytest.raises(WeightsError, match="do not fit"):
        load_yunet(truncated)


def test_from_file_checks_the_sha256(tmp_path: Path) -> None:
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    state["state_dict"]["bbox_head.multi_level_kps.2.conv2.bias"] += 1e-3  # loads, but is not the model
    altered = tmp_path / "yunet_n.pth"
    torch.save(state, altered)
    assert load_yunet(altered) is not None
    with pytest.raises(WeightsError, match="expected"):
        YuNetDetector.from_file(altered)
    assert YuNetDetector.from_file(WEIGHTS).net is not None


# --- raw outputs against onnxruntime ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_FACES))
def test_raw_outputs_match_onnxruntime(net: YuNet, onnx_session, name: str) -> None:
    assert_raw_outputs_match(net, onnx_session, pad_to_multiple(read_bgr(name)))


def test_raw_outputs_match_onnxruntime_on_a_batch(net: YuNet, onnx_session) -> None:
    batch = pad_to_multiple(canvas_batch(["obama.jpg", "two_people.jpg", "insightface_t1.jpg"]))
    assert batch.shape[0] == 3
    assert_raw_outputs_match(net, onnx_session, batch)


# --- detections ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,count", sorted(EXPECTED_FACES.items()))
def test_finds_the_manifest_faces(detector: YuNetDetector, name: str, count: int) -> None:
    faces = detector.detect(read_bgr(name), SCORE_THRESHOLD, NMS_THRESHOLD)
    assert len(faces) == count
    assert faces.boxes.shape == (count, 4) and faces.landmarks.shape == (count, 5, 2)
    assert faces.image_index.tolist() == [0] * count
    assert torch.all(faces.scores >= SCORE_THRESHOLD)
    assert torch.all(faces.scores[:-1] >= faces.scores[1:]), "faces are sorted by score"


def test_obama_box_score_and_landmarks(detector: YuNetDetector) -> None:
    faces = detector.detect(read_bgr("obama.jpg"), SCORE_THRESHOLD, NMS_THRESHOLD)
    assert len(faces) == 1
    assert faces.scores[0].item() == pytest.approx(OBAMA_SCORE, abs=1e-3)
    x1, y1, x2, y2 = faces.boxes[0].tolist()
    x, y, w, h = OBAMA_BOX_XYWH
    assert [x1, y1, x2, y2] == pytest.approx([x, y, x + w, y + h], abs=PIXEL_TOLERANCE)
    expected = torch.tensor(OBAMA_LANDMARKS, dtype=torch.float32)
    assert torch.allclose(faces.landmarks[0], expected, atol=PIXEL_TOLERANCE)


def test_blank_image_has_no_faces(detector: YuNetDetector) -> None:
    faces = detector.detect(torch.zeros(2, 3, 100, 130), SCORE_THRESHOLD, NMS_THRESHOLD)
    assert len(faces) == 0
    assert faces.boxes.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)


def test_rejects_wrong_layout(detector: YuNetDetector) -> None:
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        detector.detect(torch.zeros(1, 100, 130, 3), SCORE_THRESHOLD, NMS_THRESHOLD)


def test_batch_result_equals_per_image_results(detector: YuNetDetector) -> None:
    names = sorted(EXPECTED_FACES)
    batch = canvas_batch(names)
    together = detector.detect(batch, SCORE_THRESHOLD, NMS_THRESHOLD)
    assert torch.all(together.image_index[:-1] <= together.image_index[1:]), "grouped by image"
    for index, name in enumerate(names):
        alone = detector.detect(batch[index : index + 1], SCORE_THRESHOLD, NMS_THRESHOLD)
        mine = for_image(together, index)
        assert len(mine) == len(alone) == EXPECTED_FACES[name], name
        assert torch.allclose(mine.boxes, alone.boxes, atol=1e-3)
        assert torch.allclose(mine.scores, alone.scores, atol=1e-5)
        assert torch.allclose(mine.landmarks, alone.landmarks, atol=1e-3)


# --- CUDA ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_cuda_finds_the_same_faces(detector: YuNetDetector, half: bool) -> None:
    cuda = YuNetDetector.from_file(WEIGHTS, device="cuda", half=half)
    names = sorted(EXPECTED_FACES)
    batch = canvas_batch(names)
    reference = detector.detect(batch, SCORE_THRESHOLD, NMS_THRESHOLD)
    found = cuda.detect(batch.cuda(), SCORE_THRESHOLD, NMS_THRESHOLD)
    assert found.boxes.device.type == "cuda"
    for index, name in enumerate(names):
        ours, ref = for_image(found, index), for_image(reference, index)
        assert len(ours) == len(ref) == EXPECTED_FACES[name], name
        # fp16 may swap faces of nearly equal score, so match each reference face by IoU
        match = box_iou(ref.boxes, ours.boxes.cpu()).max(dim=1)
        assert torch.all(match.values > (0.9 if half else 0.95)), name  # fp16 on an H200: lowest 0.94
        assert torch.allclose(ours.scores.cpu()[match.indices], ref.scores, atol=0.01), name
        assert torch.allclose(ours.landmarks.cpu()[match.indices], ref.landmarks, atol=PIXEL_TOLERANCE), name
