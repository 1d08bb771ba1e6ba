"""Known answer: the same weights in toygpt and in Hugging Face's reference GPT-2
(``transformers.GPT2LMHeadModel``) give the same logits, whichever side the weights start on."""

from __future__ import annotations

import pytest
import torch

from toygpt.checkpoint import copy_weights
from toygpt.hf_format import (
    config_from_hf,
    config_to_hf,
    hf_state_dict_to_toygpt,
    toygpt_to_hf_state_dict,
)
from toygpt.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")

CONFIG = GPTConfig(vocab_size=50, block_size=16, n_layer=3, n_head=4, n_embd=32)
TOLERANCE = 1e-5


def reference_model(config: GPTConfig) -> torch.nn.Module:
    # bos/eos inside the tiny vocabulary, so transformers does not warn about them
    hf_config = transformers.GPT2Config(**config_to_hf(config), bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(hf_config).eval()


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random and O(0.1–1), so each one visibly moves the logits (a fresh
    init has zero biases and unit LayerNorms, which would hide a mix-up between them)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, CONFIG.vocab_size, (3, CONFIG.block_size), generator=torch.Generator().manual_seed(seed))


def logits_pair(ours: GPT, theirs: torch.nn.Module, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return ours(idx)[0], theirs(idx).logits


def assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.std() > 0.3, "logits too flat to compare meaningfully"
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_toygpt_weights_in_the_reference_model_give_the_same_logits(tie):
    config = CONFIG.replace(tie_embeddings=tie)
    ours = GPT(config, seed=0).eval()
    randomise(ours, seed=1)
    theirs = reference_model(config)
    theirs.load_state_dict(toygpt_to_hf_state_dict(ours), strict=True)
    assert_same(*logits_pair(ours, theirs, tokens()))


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("layout", ["GPT2LMHeadModel", "hub file"])
def test_reference_weights_in_toygpt_give_the_same_logits(tie, layout):
    theirs = reference_model(CONFIG.replace(tie_embeddings=tie))
    randomise(theirs, seed=2)
    # the hub's model.safetensors is GPT2Model's state dict: bare names, no head
    sd = theirs.state_dict() if layout == "GPT2LMHeadModel" or not tie else theirs.transformer.state_dict()
    config = config_from_hf(theirs.config.to_dict())
    # the reference's bos_token_id (0) is where toygpt starts generating from its weights
    assert config == CONFIG.replace(tie_embeddings=tie, bos_token_id=0)
    ours = GPT(config, seed=0).eval()
    copy_weights(ours, hf_state_dict_to_toygpt(sd, config))
    assert_same(*logits_pair(ours, theirs, tokens(1)))


def test_the_loss_agrees_too():
    ours = GPT(CONFIG, seed=0).eval()
    randomise(ours, seed=3)
    theirs = reference_model(CONFIG)
    theirs.load_state_dict(toygpt_to_hf_state_dict(ours))
    idx = tokens(2)
    with torch.no_grad():
        # transformers shifts the labels itself; toygpt is given the next tokens as targets
        _, our_loss = ours(idx[:, :-1], idx[:, 1:])
        their_loss = theirs(idx, labels=idx).loss
    assert abs(our_loss.item() - their_loss.item()) <= TOLERANCE


def test_the_comparison_catches_a_forgotten_transpose():
    # c_proj is square, so loading it untransposed raises no shape error: only the logits tell.
    ours = GPT(CONFIG, seed=0).eval()
    randomise(ours, seed=4)
    theirs = reference_model(CONFIG)
    sd = toygpt_to_hf_state_dict(ours)
    sd["transformer.h.1.attn.c_proj.weight"] = sd["transformer.h.1.attn.c_proj.weight"].T.contiguous()
    theirs.load_state_dict(sd)
    ours_logits, their_logits = logits_pair(ours, theirs, tokens())
    assert (ours_logits - their_logits).abs().max().item() > 100 * TOLERANCE
