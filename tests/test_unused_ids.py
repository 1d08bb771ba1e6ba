"""Ids a tokenizer cannot decode: the model never emits them, for every tokenizer kind, and a
model and tokenizer whose vocabulary sizes disagree are refused when they are put together."""

from __future__ import annotations

import pytest
import tiktoken
import torch

from toygpt import data
from toygpt.model import GPT, GPTConfig
from toygpt.sample import generate, generate_text, next_token_distribution
from toygpt.sampling import SamplingConfig
from toygpt.tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    TokenizerError,
)
from toygpt.tokenizers.base import check_model_vocab_size
from toygpt.train import TrainConfig
from toygpt.trainer import Trainer


def holey() -> TiktokenTokenizer:
    """The minimal case from issue 10: 256 byte tokens, then special tokens at 257 and 300, so
    256 and 258..299 are ids inside n_vocab=301 that stand for nothing."""
    encoding = tiktoken.Encoding(
        "holey", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={"<|endoftext|>": 257, "<|endofprompt|>": 300},
    )  # fmt: skip
    return TiktokenTokenizer(encoding)


HOLES = (256, *range(258, 300))


def every_kind() -> dict[str, object]:
    text = "low lower lowest newer wider\n" * 20
    return {
        "char": CharTokenizer.from_text(text),
        "byte": ByteTokenizer(),
        "bpe": BPETokenizer.train(text, 300, special_tokens=["<|endoftext|>"]),
        "tiktoken-holey": holey(),
    }


def tiny_model(vocab_size: int, seed: int = 0) -> GPT:
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=32, n_layer=1, n_head=1, n_embd=16), seed=seed).eval()


def token_data_of(text: str, tokenizer) -> data.TokenData:
    """data.prepare without its cache (a locally built tiktoken encoding has no saved form)."""
    return data.TokenData(torch.tensor(tokenizer.encode(text)), tokenizer.vocab_size)


def decodes(tokenizer, token_id: int) -> bool:
    try:
        tokenizer.decode([token_id])
    except TokenizerError:
        return False
    return True


@pytest.mark.parametrize("kind", ["char", "byte", "bpe", "tiktoken-holey"])
def test_unused_ids_are_exactly_the_ids_that_do_not_decode(kind):
    tokenizer = every_kind()[kind]
    undecodable = tuple(i for i in range(tokenizer.vocab_size) if not decodes(tokenizer, i))
    assert tokenizer.unused_ids() == undecodable
    assert undecodable == (HOLES if kind == "tiktoken-holey" else ())


def test_cl100k_layout_holes_are_found():
    """cl100k_base's layout: 100256 mergeable ranks, specials at 100257..100260 and 100276."""
    ranks = {bytes([i]): i for i in range(256)} | {b"\xff" + i.to_bytes(3, "big"): i for i in range(256, 100256)}
    specials = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}  # fmt: skip
    tokenizer = TiktokenTokenizer(tiktoken.Encoding("cl100k-layout", pat_str=r"\S+|\s+", mergeable_ranks=ranks,
                                                    special_tokens=specials))  # fmt: skip
    assert tokenizer.vocab_size == 100277
    assert tokenizer.unused_ids() == (100256, *range(100261, 100276))


def test_the_holey_encoding_generates_text():
    """Issue 10's case: this raised TokenizerError once the untrained model sampled a hole."""
    tokenizer = holey()
    model = tiny_model(tokenizer.vocab_size)
    text = generate_text(model, tokenizer, "hi", max_new_tokens=20, seed=0).text
    assert isinstance(text, str) and text
    unmasked = [step.token_id for step in generate(model, tokenizer.encode("hi"), 20, seed=0)]
    assert set(unmasked) & set(HOLES)  # without the tokenizer, the same model does emit a hole


@pytest.mark.parametrize("sampling", [dict(), dict(temperature=0), dict(temperature=3.0, top_k=50, top_p=0.99)])
def test_a_model_that_favours_the_holes_still_emits_only_decodable_ids(sampling):
    tokenizer = holey()
    model = tiny_model(tokenizer.vocab_size)
    with torch.no_grad():
        model.lm_head.weight[list(HOLES)] *= 50  # the holes get the largest logits by far
    steps = list(generate(model, tokenizer.encode("hi"), 40, seed=1, tokenizer=tokenizer, record_stages=True,
                          n_candidates=10, sampling=SamplingConfig(**sampling)))  # fmt: skip
    assert not {step.token_id for step in steps} & set(HOLES)
    for step in steps:
        assert not {token for token, _ in step.candidates} & set(HOLES)
        for name, probs in step.stages.stage_probs().items():
            assert float(probs[list(HOLES)].sum()) == 0.0, name
            assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5), name
    stages = next_token_distribution(model, tokenizer.encode("hi"), tokenizer=tokenizer)
    assert float(stages.probs[list(HOLES)].sum()) == 0.0


def test_training_with_samples_on_a_holey_tokenizer():
    tokenizer = holey()
    token_data = token_data_of("to be or not to be, that is the question\n" * 40, tokenizer)
    samples = []
    config = TrainConfig(max_steps=3, batch_size=2, block_size=16, eval_interval=1000, eval_batches=1,
                         sample_interval=1, sample_tokens=60, max_snapshots=0, checkpoint_interval=0, precision="fp32")  # fmt: skip
    Trainer(tiny_model(tokenizer.vocab_size), token_data, config, tokenizer=tokenizer,
            on_event=lambda e: e["type"] == "sample" and samples.append(e["text"])).run()  # fmt: skip
    assert len(samples) == 3 and all(isinstance(s, str) for s in samples)  # after steps 1, 2, 3


@pytest.mark.parametrize("model_size", [300, 302])
def test_sizes_that_disagree_are_refused_when_put_together(model_size):
    tokenizer = holey()  # 301 ids
    model = tiny_model(model_size)
    message = f"301 token ids but the model has vocab_size={model_size}"
    with pytest.raises(TokenizerError, match=message):
        generate(model, [1], 5, tokenizer=tokenizer)  # at the call, before any token is drawn
    with pytest.raises(TokenizerError, match=message):
        generate_text(model, tokenizer, "hi", 5)
    with pytest.raises(TokenizerError, match=message):
        next_token_distribution(model, [1], tokenizer=tokenizer)
    token_data = token_data_of("hi there\n" * 50, tokenizer)
    with pytest.raises(ValueError, match=f"vocab_size={model_size}"):  # a smaller model: the data check says it
        Trainer(model, token_data, TrainConfig(max_steps=1, block_size=8), tokenizer=tokenizer)
    check_model_vocab_size(tokenizer, 301)  # the right size passes


def test_cli_refuses_a_model_larger_than_its_tokenizer(isolated_dirs):
    """It refused only a tokenizer larger than the model; a larger model emitted undecodable ids."""
    from toygpt.checkpoint import save_checkpoint
    from toygpt.cli.sample import load_for_sampling

    tokenizer = CharTokenizer.from_text("abc\n")
    save_checkpoint(isolated_dirs / "runs" / "mismatch", tiny_model(tokenizer.vocab_size + 3), tokenizer.to_dict())
    with pytest.raises(ValueError, match="different runs"):
        load_for_sampling("mismatch")
