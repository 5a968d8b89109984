"""The family template (docs/adding_a_family.md), walked through with a toy family defined here: what the base
class does for a family, and that the registry-derived test lists pick a new family up and fail where a piece
is missing (no configs, no recipe, no converter) instead of skipping it.

The toy family is registered only inside the tests that need it (a module-level registration would change the
variant lists that other test modules collect).
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import pytest
import torch
from torch import Tensor, nn

import vt_backbones
from vt_backbones.base import ALL_STAGES, StagedBackbone, stage_channels
from vt_backbones.layers import BlockSettings, PatchEmbed, PatchMerging, PreNormBlock, attention
from vt_backbones.registry import MODELS

import conftest
import test_configs
import test_contract


class ToyAttention(nn.Module):
    """Global multi-head attention with its own projections. ``[B, H, W, C]`` -> same shape."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        q, k, v = self.qkv(x).view(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(attention(q, k, v).transpose(1, 2).reshape(B, H, W, C))


class ToyStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, settings: BlockSettings, drop_paths: Sequence[float],
                 downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            PreNormBlock(dim=dim, attn=ToyAttention(dim=dim, num_heads=num_heads, qkv_bias=settings.qkv_bias),
                         settings=settings, drop_path=drop_paths[i]) for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, run_block: Callable[..., Tensor]) -> Tensor:
        for block in self.blocks:
            x = run_block(block, x)
        return x


class ToyNet(StagedBackbone):
    arch_settings = {'tiny': dict(embed_dims=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))}
    variants = {'toy_t': 'tiny'}

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = ALL_STAGES, frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, init_cfg: dict | None = None, pretrained: str | None = None,
                 compile_blocks: bool | dict = False) -> None:
        super().__init__(arch=arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, drop_path_rate=drop_path_rate, init_cfg=init_cfg,
                         pretrained=pretrained, compile_blocks=compile_blocks)
        self.num_features = stage_channels(self.arch['embed_dims'])
        self.patch_embed = PatchEmbed(in_channels, self.num_features[0], patch_size=4)
        self.pos_drop = nn.Dropout(0.0)
        self.layers = nn.ModuleList([ToyStage(**stage, settings=BlockSettings(mlp_ratio=2.0))
                                     for stage in self.stage_arguments(drop_path_rate)])
        self.add_output_norms()


@pytest.fixture
def toy_family() -> Iterator[type[ToyNet]]:
    MODELS.register_module(module=ToyNet)
    try:
        yield ToyNet
    finally:
        MODELS._module_dict.pop('ToyNet')


def test_the_base_class_initialises_and_freezes_after_the_family_init(toy_family):
    model = vt_backbones.create_backbone('toy_t', frozen_stages=2)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert all(m.bias is None or not m.bias.any() for m in linears)  # reset_parameters ran (PyTorch's biases are not 0)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters()
                      if n.startswith(('patch_embed.', 'layers.0.blocks.', 'layers.1.blocks.', 'layers.0.downsample.',
                                       'norm0.', 'norm1.'))}
    outs = model(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 25, 33), (1, 32, 13, 17), (1, 64, 7, 9), (1, 128, 4, 5)]


def test_a_declared_attribute_left_unset_is_an_error():
    class Forgetful(ToyNet):
        def __init__(self, **kw) -> None:
            super().__init__(**kw)
            del self.layers  # as a family that never set it

    with pytest.raises(TypeError, match=r"Forgetful.__init__ must set \['layers'\]"):
        Forgetful()


def test_a_family_without_its_stage_methods_is_an_error():
    class Incomplete(vt_backbones.VisionBackbone):
        arch_settings = ToyNet.arch_settings

        def __init__(self) -> None:
            super().__init__(arch='tiny')
            self.num_features = stage_channels(16)

    with pytest.raises(TypeError, match=r"Incomplete must define \['stem', 'stage_parts', 'forward_stage'\]"):
        Incomplete()


def test_registry_derived_lists_pick_a_new_family_up_and_fail_on_its_missing_pieces(toy_family):
    assert 'toy_t' in vt_backbones.list_models() and toy_family in vt_backbones.families()
    assert 'toy_t' in conftest.smallest_variants()
    with pytest.raises(AssertionError, match='configs/ lacks'):
        test_configs.test_every_variant_has_its_configs('toy_t')
    with pytest.raises(AssertionError, match='recipes lacks'):
        test_configs.test_every_family_has_its_recipes(toy_family)
    with pytest.raises(AssertionError, match='registers no FamilyConverter'):
        test_contract.test_every_family_has_a_weight_converter(toy_family)
