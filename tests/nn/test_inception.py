"""FID InceptionV3: parity with pytorch-fid's network (random weights, offline), weight conversion, safe loading.

The reference below is pytorch-fid's `InceptionV3(output_blocks=[3])` (pytorch_fid/inception.py, v0.3.0) over
torchvision's `Inception3` blocks (torchvision/models/inception.py), written out here because torchvision is not
installed: `BasicConv2d`, `InceptionB`, `InceptionD` as in torchvision; `FIDInceptionA/C/E_1/E_2` as pytorch-fid
patches them (average pools that exclude padding; a max pool in Mixed_7c).
"""

import os
import pickle

import chex
import jax
import numpy as np
import pytest

from tests.extras import import_extra

torch = import_extra("torch", "ref")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from jaxrep import parallel  # noqa: E402
from jaxrep.nn.inception import FID_FEATURE_DIM, FIDInceptionV3  # noqa: E402
from jaxrep.weights.convert import CheckpointMismatchError, UnreadableWeightsError  # noqa: E402
from jaxrep.weights.features import extract_features, inception_extractor  # noqa: E402
from jaxrep.weights.inception import inception_variables_from_state_dict, load_inception_variables  # noqa: E402


class BasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class FIDInceptionA(nn.Module):
    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        branch_pool = self.branch_pool(branch_pool)
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch3x3dbl, branch_pool], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        branch_pool = self.branch_pool(branch_pool)
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)


class FIDInceptionE(nn.Module):
    """FIDInceptionE_1 (max_pool=False) and FIDInceptionE_2 (max_pool=True)."""

    def __init__(self, in_channels, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        if self.max_pool:
            branch_pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        branch_pool = self.branch_pool(branch_pool)
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)


class ReferenceInceptionV3(nn.Module):
    """pytorch-fid's InceptionV3(output_blocks=[3], resize_input, normalize_input=True) with fid_inception_v3()'s
    modules; `fc` stays in the state dict as in the released file but is unused for pool3."""

    def __init__(self, resize_input=True):
        super().__init__()
        self.resize_input = resize_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
        if self.resize_input:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, output_size=(1, 1))[:, :, 0, 0]


def _randomized_reference(seed=0, resize_input=True):
    """Random conv weights (He-scaled, so activations stay O(1) through 17 blocks) and random BN running stats."""
    torch.manual_seed(seed)
    model = ReferenceInceptionV3(resize_input=resize_input).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(1000)
    return model


@pytest.fixture(scope="module")
def reference():
    model = _randomized_reference()
    state_dict = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    return model, state_dict


def _features_both(model, state_dict, images_nhwc, resize_input=True):
    with torch.no_grad():
        expected = model(torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy())).numpy()
    variables = inception_variables_from_state_dict(state_dict)
    actual = jax.jit(FIDInceptionV3(resize_input=resize_input).apply)(variables, images_nhwc)
    return np.asarray(actual), expected


def test_pool_features_match_pytorch_fid_at_75px(reference):
    """No resize, the smallest input the network accepts: the whole graph at a fraction of the 299 px cost."""
    _, state_dict = reference
    model = _randomized_reference(resize_input=False)
    images = np.random.default_rng(0).uniform(size=(2, 75, 75, 3)).astype(np.float32)
    actual, expected = _features_both(model, state_dict, images, resize_input=False)
    assert actual.shape == (2, FID_FEATURE_DIM)
    assert np.abs(expected).max() > 0.05  # random weights still carry signal to pool3
    np.testing.assert_array_less(np.abs(actual - expected).max(), 1e-4)


def test_fid_extractor_matches_pytorch_fid_on_uint8_grey_images(reference):
    """The pipeline `train.evaluate` runs: uint8 -> [0, 1], grey -> RGB, bilinear resize to 299, pool3, with the
    last batch padded; against pytorch-fid fed the same images as float RGB in [0, 1]."""
    model, state_dict = reference
    grey = np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 1), dtype=np.uint8)
    extractor = inception_extractor(inception_variables_from_state_dict(state_dict))
    actual = extract_features(extractor, [grey[:2], grey[2:]], batch_size=2, keep=3,
                              mesh=parallel.make_mesh(jax.devices()[:1])).features
    rgb = np.repeat(grey, 3, axis=-1).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    with torch.no_grad():
        expected = model(torch.from_numpy(rgb)).numpy()
    np.testing.assert_array_less(np.abs(actual - expected).max(), 1e-4)


def test_conversion_skips_fc_and_counters_and_rejects_wrong_files(reference):
    _, state_dict = reference
    variables = inception_variables_from_state_dict(state_dict)
    assert variables["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"].shape == (1, 7, 128, 128)
    np.testing.assert_array_equal(variables["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
                                  state_dict["Mixed_7c.branch_pool.bn.running_var"])

    torchvision_like = dict(state_dict, **{"fc.weight": np.zeros((1000, 2048), np.float32)})
    with pytest.raises(CheckpointMismatchError, match="torchvision"):
        inception_variables_from_state_dict(torchvision_like)
    with_aux = dict(state_dict, **{"AuxLogits.conv0.conv.weight": np.zeros((128, 768, 1, 1), np.float32)})
    with pytest.raises(CheckpointMismatchError, match="AuxLogits"):
        inception_variables_from_state_dict(with_aux)
    incomplete = {k: v for k, v in state_dict.items() if not k.startswith("Mixed_7c.branch_pool.")}
    with pytest.raises(CheckpointMismatchError, match="Mixed_7c/branch_pool/conv/kernel"):
        inception_variables_from_state_dict(incomplete)
    wrong_shape = dict(state_dict, **{"Conv2d_1a_3x3.conv.weight": np.zeros((32, 1, 3, 3), np.float32)})
    with pytest.raises(CheckpointMismatchError, match="Conv2d_1a_3x3.conv.weight"):
        inception_variables_from_state_dict(wrong_shape)


def test_loads_pth_and_safetensors_files(reference, tmp_path):
    from safetensors.numpy import save_file

    model, state_dict = reference
    torch.save(model.state_dict(), tmp_path / "pt_inception.pth")
    save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, str(tmp_path / "inception.safetensors"))
    direct = inception_variables_from_state_dict(state_dict)
    for name in ("pt_inception.pth", "inception.safetensors"):
        loaded = load_inception_variables(tmp_path / name)
        chex.assert_trees_all_equal(loaded, direct)
    with pytest.raises(FileNotFoundError, match="pt_inception"):
        load_inception_variables(tmp_path / "missing.pth")


def _touch(path):
    """Side effect an unsafe unpickler would run."""
    open(path, "w").close()


class _Malicious:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return _touch, (self.marker,)


def test_loading_never_unpickles_code(tmp_path):
    marker = str(tmp_path / "code_ran")
    path = tmp_path / "pt_inception.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3), "payload": _Malicious(marker)}, path)
    with pytest.raises(UnreadableWeightsError, match=r"weights_only=True\) refuses it: Unsupported global") as error:
        load_inception_variables(path)
    assert isinstance(error.value.__cause__, pickle.UnpicklingError)
    assert not os.path.exists(marker)
    # The same file does run code under a plain (unsafe) load: the refusal above is what protects.
    torch.load(path, weights_only=False)
    assert os.path.exists(marker)
