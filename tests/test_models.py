"""Networks: official parameter counts, shapes, init, coarse-to-fine loading, pooling, VGG."""

from __future__ import annotations

import pytest
import torch

from hf_pix2pixhd import (
    FeatureEncoder,
    GlobalGenerator,
    LocalEnhancerGenerator,
    MultiScaleDiscriminator,
    PatchGANDiscriminator,
    ResnetGenerator,
    UNetGenerator,
    VGGFeatures,
    instance_average_pool,
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (lambda: UNetGenerator(norm="batch"), 54_413_955),
        (lambda: PatchGANDiscriminator(in_channels=6), 2_768_705),
        (lambda: GlobalGenerator(in_channels=36), 182_546_755),
        (lambda: LocalEnhancerGenerator(in_channels=36, ngf=32), 182_857_059),
        (lambda: MultiScaleDiscriminator(in_channels=39, num_d=3), 8_404_803),
        (lambda: FeatureEncoder(), 788_803),
    ],
    ids=["unet256", "patchgan", "global", "local", "multiscale_d", "encoder"],
)
def test_official_parameter_counts(factory, expected):
    assert n_params(factory()) == expected


def test_init_follows_the_papers():
    torch.manual_seed(0)
    model = UNetGenerator(ngf=16, num_downs=6)
    convs = torch.cat(
        [m.weight.flatten() for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    )
    norms = torch.cat(
        [m.weight.flatten() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    )
    assert abs(convs.mean()) < 2e-3 and abs(convs.std() - 0.02) < 2e-3
    assert abs(norms.mean() - 1) < 6e-3 and abs(norms.std() - 0.02) < 6e-3


def test_generator_shapes_and_range():
    x = torch.randn(2, 5, 64, 128)
    for model in (
        UNetGenerator(in_channels=5, num_downs=6, ngf=4),
        ResnetGenerator(in_channels=5, ngf=4, n_blocks=2),
        GlobalGenerator(in_channels=5, ngf=4, n_downsampling=3, n_blocks=1),
        LocalEnhancerGenerator(in_channels=5, ngf=2, n_downsampling_global=2, n_blocks_global=1),
    ):
        y = model.eval()(x)
        assert y.shape == (2, 3, 64, 128)
        assert y.abs().max() <= 1


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match="built for 36 input channels but got 35"):
        GlobalGenerator(in_channels=36, ngf=4, n_downsampling=2, n_blocks=1)(
            torch.zeros(1, 35, 32, 32)
        )
    with pytest.raises(ValueError, match="NCHW"):
        UNetGenerator(num_downs=5, ngf=4)(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="multiples of 32"):
        UNetGenerator(num_downs=5, ngf=4)(torch.zeros(1, 3, 32, 48))


def test_local_enhancer_loads_a_trained_global_generator_into_its_trunk():
    torch.manual_seed(0)
    global_g = GlobalGenerator(in_channels=4, ngf=8, n_downsampling=2, n_blocks=1)
    local = LocalEnhancerGenerator(in_channels=4, ngf=4, n_downsampling_global=2, n_blocks_global=1)
    local.load_global_generator(global_g)
    x = torch.randn(1, 4, 32, 32)
    pooled = local.downsample(x)
    # The trunk must now compute exactly the global net minus its last 3 layers.
    expected = global_g.model[:-3](pooled)
    torch.testing.assert_close(local.model(pooled), expected, rtol=0, atol=0)
    assert all(
        not n.startswith("model.")
        for n, _ in local.named_parameters()
        if any(p is _ for p in local.enhancer_parameters())
    )
    with pytest.raises(ValueError, match="ngf"):
        local.load_global_generator(
            GlobalGenerator(in_channels=4, ngf=4, n_downsampling=2, n_blocks=1)
        )


def test_patchgan_features_and_output_size():
    d = PatchGANDiscriminator(in_channels=6, ndf=8).eval()
    x = torch.randn(1, 6, 256, 256)
    assert d(x).shape == (1, 1, 30, 30)
    features = d(x, return_features=True)
    assert len(features) == 5
    torch.testing.assert_close(features[-1], d(x))


def test_multiscale_discriminator_orders_scales_full_resolution_first():
    d = MultiScaleDiscriminator(in_channels=4, ndf=4, num_d=3).eval()
    out = d(torch.randn(1, 4, 64, 64))
    assert len(out) == 3 and all(len(scale) == 5 for scale in out)
    assert out[0][0].shape[-1] > out[1][0].shape[-1] > out[2][0].shape[-1]
    # Scale 0 must be the PatchGAN named scale2 (the official numbering).
    blocks = d.discriminator_at(0)
    assert blocks[0] is d.scale2_layer0
    plain = MultiScaleDiscriminator(in_channels=4, ndf=4, num_d=2, return_features=False).eval()
    assert [len(s) for s in plain(torch.randn(1, 4, 64, 64))] == [1, 1]


def reference_instance_pool(features, instances):
    """The official Python loop, for comparison."""
    out = features.clone()
    for b in range(features.shape[0]):
        for i in instances[b].unique():
            mask = instances[b, 0] == i
            for c in range(features.shape[1]):
                out[b, c][mask] = features[b, c][mask].mean()
    return out


@pytest.mark.parametrize("ids_dtype", [torch.float32, torch.int64, torch.int32])
def test_vectorised_instance_pooling_matches_the_official_loop(ids_dtype):
    torch.manual_seed(0)
    features = torch.randn(2, 3, 17, 23)
    instances = torch.randint(0, 9, (2, 1, 17, 23)).to(ids_dtype)
    instances[1] += 26000  # Cityscapes-like ids (class * 1000 + k)
    expected = reference_instance_pool(features, instances)
    torch.testing.assert_close(instance_average_pool(features, instances), expected)


def test_instance_pooling_with_sparse_huge_ids_and_gradients():
    features = torch.randn(1, 2, 8, 8, requires_grad=True)
    instances = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    instances[..., 4:] = 10**12  # forces the sort-based path
    pooled = instance_average_pool(features, instances)
    torch.testing.assert_close(pooled, reference_instance_pool(features.detach(), instances))
    pooled.sum().backward()
    assert features.grad is not None and torch.allclose(features.grad, torch.ones_like(features))


def test_encoder_output_is_constant_per_instance():
    encoder = FeatureEncoder(ngf=4, n_downsampling=2).eval()
    instances = torch.zeros(1, 1, 32, 32)
    instances[..., 16:, :] = 7
    out = encoder(torch.randn(1, 3, 32, 32), instances)
    assert out.shape == (1, 3, 32, 32)
    assert torch.allclose(out[..., :16, :], out[..., :1, :1].expand(1, 3, 16, 32))


def test_vgg_has_torchvision_keys():
    vgg19 = VGGFeatures("vgg19")
    keys = list(vgg19.features.state_dict())
    assert keys[0] == "0.weight" and keys[-1] == "28.bias"  # conv5_1 is features.28
    assert vgg19.tap_indices == (1, 6, 11, 20, 29)
    assert VGGFeatures("vgg16").tap_indices == (1, 6, 11, 18, 25)
    with pytest.raises(ValueError, match="Unknown VGG variant"):
        VGGFeatures("vgg11")


def test_vgg16_loads_the_shared_torchvision_weights(shared_dir):
    path = shared_dir / "weights" / "vgg16_features.safetensors"
    vgg = VGGFeatures.from_torchvision_weights(path, variant="vgg16")
    outputs = vgg(torch.zeros(1, 3, 32, 32))
    assert [o.shape[1] for o in outputs] == [64, 128, 256, 512, 512]
    assert not any(p.requires_grad for p in vgg.parameters())
    with pytest.raises(ValueError, match="vgg19"):
        VGGFeatures.from_torchvision_weights(path, variant="vgg19")
