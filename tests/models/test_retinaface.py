"""RetinaFace port: strict load, raw head outputs and detections against the references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.retinaface import RetinaFace, anchors, decode_boxes, fold_batchnorm
from tests.models.conftest import MODELS_DIR, REFERENCE_DIR, UTKFACE_DIR, read_bgr

SCORE_THRESHOLD = 0.8  # the MANIFEST's settings for photos
NMS_THRESHOLD = 0.4
RAW_TOLERANCE = 5e-5  # loc/landms reach about 10 in magnitude
FOLDED_TOLERANCE = 5e-4  # folding changes the rounding order
PIXEL_TOLERANCE = 2.0
SCORE_TOLERANCE = 0.01

# reference/README.md: every face (score > 0.8, NMS 0.4), by image, in score order
REFERENCE_FACES = {
    "obama.jpg": [(0.99999, (362.1, 104.1, 621.3, 415.33))],
    "biden.jpg": [(0.99997, (397.57, 223.97, 735.52, 592.44)), (0.86080, (262.07, 59.14, 438.18, 328.36))],
    "two_people.jpg": [(0.99957, (236.92, 29.6, 383.8, 223.38)), (0.99492, (786.36, 46.41, 942.1, 253.2))],
    "insightface_t1.jpg": [
        (0.99994, (468.13, 267.26, 572.36, 414.33)),
        (0.99992, (59.59, 263.44, 169.27, 396.02)),
        (0.99985, (745.37, 341.26, 844.71, 483.7)),
        (0.99978, (269.5, 147.51, 368.16, 271.98)),
        (0.99970, (905.12, 48.67, 1009.85, 202.27)),
        (0.99942, (1135.51, 273.93, 1224.47, 397.46)),
    ],
    "facenet_pytorch_multiface.jpg": [
        (0.99911, (860.4, 436.96, 948.59, 555.44)),
        (0.99900, (223.94, 245.86, 303.83, 359.09)),
        (0.99894, (420.54, 131.3, 506.87, 246.49)),
        (0.99714, (623.11, 197.01, 695.58, 298.16)),
        (0.99659, (724.29, 466.19, 798.87, 574.14)),
        (0.99573, (554.18, 45.61, 634.77, 156.88)),
    ],
}
OBAMA_LANDMARKS = ((434, 210), (552, 211), (492, 275), (435, 315), (546, 316))  # MANIFEST, rounded


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


def test_checkpoint_loads_strictly() -> None:
    state = torch.load(MODELS_DIR / "retinaface_mobilenet0.25.pth", map_location="cpu", weights_only=True)
    net = RetinaFace()
    assert set(net.state_dict()) == set(state)
    net.load_state_dict(state, strict=True)


def test_anchors_follow_the_manifest() -> None:
    priors = anchors(1137, 910)
    assert priors.shape == (42900, 4)  # 2 x (143x114 + 72x57 + 36x29)
    torch.testing.assert_close(priors[0], torch.tensor([4 / 910, 4 / 1137, 10 / 910, 10 / 1137]))
    torch.testing.assert_close(priors[1, 2:], torch.tensor([20 / 910, 20 / 1137]))
    # first anchor of the stride-32 level: cell (0, 0), size 128
    first_32 = 2 * (143 * 114 + 72 * 57)
    torch.testing.assert_close(priors[first_32], torch.tensor([16 / 910, 16 / 1137, 128 / 910, 128 / 1137]))
    assert anchors(1137, 910) is priors  # cached per size and device


def test_zero_deltas_decode_to_the_anchor() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.1]])
    torch.testing.assert_close(decode_boxes(torch.zeros(1, 4), priors), torch.tensor([[0.4, 0.45, 0.6, 0.55]]))


@pytest.mark.parametrize("folded", [False, True], ids=["as-loaded", "bn-folded"])
def test_raw_outputs_match_reference(folded: bool) -> None:
    """The port as loaded, and with its batch norms folded into the convs (what the detector
    runs), against the original code's head outputs on obama.jpg."""
    net = RetinaFace()
    net.load_state_dict(torch.load(MODELS_DIR / "retinaface_mobilenet0.25.pth", map_location="cpu", weights_only=True))
    net.eval()
    if folded:
        fold_batchnorm(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    tolerance = FOLDED_TOLERANCE if folded else RAW_TOLERANCE
    with np.load(REFERENCE_DIR / "retinaface_obama_raw.npz") as reference:
        expected = {key: reference[key] for key in ("loc", "conf", "landms")}
    batch = as_batch(read_bgr("obama.jpg")) - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)
    with torch.inference_mode():
        loc, conf, landms = net(batch)
    for name, actual in (("loc", loc), ("conf", conf), ("landms", landms)):
        difference = np.abs(actual[0].numpy() - expected[name]).max()
        assert difference < tolerance, f"{name} differs by {difference}"


@pytest.mark.parametrize("name", sorted(REFERENCE_FACES))
def test_detections_match_reference(retinaface_detector, name: str) -> None:
    found = retinaface_detector.detect(as_batch(read_bgr(name)), SCORE_THRESHOLD, NMS_THRESHOLD)
    expected = REFERENCE_FACES[name]
    assert len(found) == len(expected)
    assert found.image_index.tolist() == [0] * len(expected)
    assert (found.scores[:-1] >= found.scores[1:]).all(), "faces not in score order"
    expected_scores = torch.tensor([score for score, _ in expected])
    expected_boxes = torch.tensor([box for _, box in expected])
    # order by box so that near-equal scores cannot swap the pairing
    order_found = found.boxes[:, 0].argsort()
    order_expected = expected_boxes[:, 0].argsort()
    assert (found.boxes[order_found] - expected_boxes[order_expected]).abs().max() <= PIXEL_TOLERANCE
    assert (found.scores[order_found] - expected_scores[order_expected]).abs().max() <= SCORE_TOLERANCE


def test_obama_landmarks(retinaface_detector) -> None:
    found = retinaface_detector.detect(as_batch(read_bgr("obama.jpg")), SCORE_THRESHOLD, NMS_THRESHOLD)
    assert (found.landmarks[0] - torch.tensor(OBAMA_LANDMARKS, dtype=torch.float32)).abs().max() <= PIXEL_TOLERANCE


def test_every_utkface_chip_has_one_face(retinaface_detector) -> None:
    chips = sorted(UTKFACE_DIR.glob("*.jpg"))
    assert len(chips) == 9
    batch = torch.cat([as_batch(read_bgr(path)) for path in chips])  # all 200 x 200
    found = retinaface_detector.detect(batch, SCORE_THRESHOLD, NMS_THRESHOLD)
    assert found.image_index.tolist() == list(range(9))
    assert found.scores.min() > 0.99


def test_empty_image_gives_no_faces(retinaface_detector) -> None:
    found = retinaface_detector.detect(torch.zeros(2, 3, 64, 80), SCORE_THRESHOLD, NMS_THRESHOLD)
    assert len(found) == 0
    assert found.boxes.shape == (0, 4) and found.landmarks.shape == (0, 5, 2)


def test_forward_any_size_no_nan(retinaface_detector) -> None:
    with torch.inference_mode():
        loc, conf, landms = retinaface_detector.net(torch.randn(3, 3, 77, 131) * 50)
    assert loc.shape[0] == 3 and loc.shape[1] == anchors(77, 131).shape[0]
    assert not any(torch.isnan(t).any() for t in (loc, conf, landms)), "Output included NaNs"
