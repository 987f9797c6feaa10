"""Gender-age port: strict load with MXNet names, outputs against the reference, decoding."""

from __future__ import annotations

import numpy as np
import torch

from models.genderage import GenderAge, MXBatchNorm, decode, mxnet_key
from tests.models.conftest import MODELS_DIR

OUTPUT_TOLERANCE = 1e-4  # outputs reach about 5 in magnitude

# reference/README.md table, rows 0..16
REFERENCE_MALE = [1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1]
REFERENCE_AGE = [61, 60, 36, 54, 68, 36, 24, 27, 26, 24, 24, 30, 36, 30, 30, 34, 36]


def test_checkpoint_loads_strictly_with_mxnet_names() -> None:
    state = torch.load(MODELS_DIR / "insightface_genderage_2018.pth", map_location="cpu", weights_only=True)
    assert len(state) == 146
    net = GenderAge()
    mapped = {mxnet_key(name): tensor for name, tensor in state.items()}
    assert set(mapped) == set(net.state_dict())
    net.load_state_dict(mapped, strict=True)


def test_mxnet_key() -> None:
    assert mxnet_key("conv_5_dw_batchnorm_moving_var") == "conv_5_dw.batchnorm.moving_var"
    assert mxnet_key("conv_14_conv2d_weight") == "conv_14.conv2d.weight"
    assert mxnet_key("relu1_gamma") == "relu1.weight"
    assert mxnet_key("fc1_gamma") == "fc1.gamma"
    assert mxnet_key("pre_fc1_bias") == "pre_fc1.bias"


def test_fix_gamma_ignores_the_stored_gamma() -> None:
    x = torch.randn(2, 4, 3, 3)
    fixed, free = MXBatchNorm(4, 1e-3, fix_gamma=True), MXBatchNorm(4, 1e-3, fix_gamma=False)
    for bn in (fixed, free):
        bn.gamma.data.fill_(3.0)
        bn.moving_var.fill_(1.0 - 1e-3)  # var + eps = 1
    torch.testing.assert_close(fixed(x), x)
    torch.testing.assert_close(free(x), 3 * x)


def test_unfolded_outputs_match_reference(genderage_reference) -> None:
    state = torch.load(MODELS_DIR / "insightface_genderage_2018.pth", map_location="cpu", weights_only=True)
    net = GenderAge()
    net.load_state_dict({mxnet_key(name): tensor for name, tensor in state.items()})
    crops = torch.from_numpy(genderage_reference["crops_rgb_uint8"]).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        outputs = net.eval()(crops).numpy()
    assert np.abs(outputs - genderage_reference["outputs"]).max() < OUTPUT_TOLERANCE


def test_outputs_match_reference(classifier, genderage_reference) -> None:
    """The classifier runs the network with its batch norms folded."""
    assert not any(isinstance(m, MXBatchNorm) for m in classifier.net.modules() if m is not classifier.net.bn1)
    crops = torch.from_numpy(genderage_reference["crops_rgb_uint8"]).permute(0, 3, 1, 2).float()
    outputs = classifier.forward(crops).numpy()
    difference = np.abs(outputs - genderage_reference["outputs"]).max()
    assert difference < OUTPUT_TOLERANCE, f"outputs differ by {difference}"
    p_male, age = classifier.predict(crops)
    assert (p_male > 0.5).long().tolist() == REFERENCE_MALE
    assert age.tolist() == REFERENCE_AGE


def test_decode() -> None:
    outputs = torch.zeros(2, 202)
    outputs[0, :2] = torch.tensor([0.0, 2.0])
    outputs[0, 3:202:2] = 1.0  # every pair says yes: age 100
    outputs[1, :2] = torch.tensor([1.0, -1.0])
    outputs[1, 3 : 3 + 2 * 30 : 2] = 1.0  # 30 pairs say yes
    p_male, age = decode(outputs)
    torch.testing.assert_close(p_male, torch.tensor([1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(2.0))]).float())
    assert age.tolist() == [100, 30]


def test_empty_batch(classifier) -> None:
    p_male, age = classifier.predict(torch.zeros(0, 3, 112, 112))
    assert p_male.shape == (0,) and age.shape == (0,)


def test_forward_no_nan(classifier) -> None:
    outputs = classifier.forward(torch.rand(3, 3, 112, 112) * 255)
    assert outputs.shape == (3, 202)
    assert not torch.isnan(outputs).any(), "Output included NaNs"
