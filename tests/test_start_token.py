"""The empty prompt's start token is a context the model was trained on, for every tokenizer kind:
measured by the loss of the first token after it on a trained nano model."""

from __future__ import annotations

import pytest
import tiktoken
import torch
import torch.nn.functional as F

from toygpt import data
from toygpt.model import GPT, preset
from toygpt.pipeline import TrainSpec, run_training
from toygpt.sample import encode_prompt, generate, start_token_id
from toygpt.sampling import SamplingConfig
from toygpt.tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, TiktokenTokenizer
from toygpt.train import TrainConfig
from toygpt.trainer import train

EOT = "<|endoftext|>"
# fp32: the losses below depend on training numerics (bf16 autocast on an AVX-512 BF16 CPU)
QUICK = dict(batch_size=16, learning_rate=3e-3, warmup_steps=10, eval_interval=1000, eval_batches=1,
             log_interval=1000, max_snapshots=0, checkpoint_interval=0, precision="fp32")  # fmt: skip


def make_tokenizer(kind: str, text: str):
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer(special_tokens=[EOT])
    if kind == "bpe":
        return BPETokenizer.train(text[:20_000], 320, special_tokens=[EOT])
    # tiktoken: a local byte-level encoding with GPT-2's separator (gpt2 itself is the same code
    # path at 200 times the vocabulary: minutes of training here instead of seconds)
    encoding = tiktoken.Encoding("bytes-eot", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                                 special_tokens={EOT: 256})  # fmt: skip
    return TiktokenTokenizer(encoding)


def first_token_loss(model: GPT, start: int, first_ids: list[int]) -> float:
    """Mean cross-entropy (nats) of each line's first token, read right after ``start``."""
    with torch.no_grad():
        log_probs = F.log_softmax(model(torch.tensor([[start]]))[0][0, -1].float(), dim=-1)
    return float(-log_probs[first_ids].mean())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["char", "byte", "bpe", "tiktoken"])
def test_the_first_token_after_the_start_token_is_learned(kind):
    """toy-english lines start with "the" or "a": after a good start token the first token
    costs about ln 2 = 0.69 nats. After <|endoftext|>, which toygpt's data never contains (the
    old start token for tokenizers that have it), it cost more than a uniform guess."""
    text = data.load_corpus("toy-english")
    tokenizer = make_tokenizer(kind, text)
    token_data = data.TokenData(torch.tensor(tokenizer.encode(text)), tokenizer.vocab_size)  # no cache
    start = data.start_token_for(token_data, tokenizer)
    model = GPT(preset("nano", vocab_size=tokenizer.vocab_size, bos_token_id=start), seed=0)
    train(model, token_data, TrainConfig(max_steps=150, **QUICK))
    assert start == tokenizer.encode("\n")[0] == start_token_id(tokenizer, model) == encode_prompt(tokenizer, "", model)[0]
    lines = text.splitlines()[-300:]  # in the validation split
    first_ids = [tokenizer.encode(line)[0] for line in lines]
    loss = first_token_loss(model, start, first_ids)
    assert loss < 1.0, loss
    if EOT in tokenizer.special_tokens:
        after_eot = first_token_loss(model, tokenizer.special_tokens[EOT], first_ids)
        assert after_eot > max(3 * loss, loss + 1.0), (after_eot, loss)


def test_a_run_records_its_start_token_and_generation_uses_it():
    run_training(TrainSpec(corpus="toy-english", tokenizer="bpe-300", model=preset("nano"), name="starts",
                           train=TrainConfig(max_steps=2, **{**QUICK, "batch_size": 4})))  # fmt: skip
    from toygpt.runs import open_run

    run = open_run("starts")
    model, tokenizer = run.load_model("latest").model, run.tokenizer()
    newline = tokenizer.encode("\n")[0]
    assert model.config.bos_token_id == newline
    greedy = [s.token_id for s in generate(model, [], 5, sampling=SamplingConfig(temperature=0), tokenizer=tokenizer)]
    assert greedy == [s.token_id for s in generate(model, [newline], 5, sampling=SamplingConfig(temperature=0))]


def test_the_rule_without_a_recorded_start_token():
    """Runs saved before bos_token_id existed (the demo among them) keep loading and start from
    a newline; <|endoftext|> only when there is no newline token; a recorded id wins."""
    byte = ByteTokenizer(special_tokens=[EOT])
    assert start_token_id(byte) == 10  # "\n", not <|endoftext|> = 256
    no_newline = CharTokenizer.from_text("abc")
    assert start_token_id(no_newline) == 0
    model = GPT(preset("nano", vocab_size=byte.vocab_size, bos_token_id=256), seed=0)
    assert start_token_id(byte, model) == 256 and encode_prompt(byte, "", model) == [256]
    with pytest.raises(ValueError, match="bos_token_id=257"):
        preset("nano", vocab_size=257, bos_token_id=257)


def test_the_demo_still_loads_and_starts_after_a_newline():
    from toygpt.runs import DEMO_RUN, demo_run_dir, open_run

    if not (demo_run_dir() / "model.safetensors").exists():
        pytest.skip("the demo checkpoint is not in this checkout")
    demo = open_run(DEMO_RUN)
    model, tokenizer = demo.load_model().model, demo.tokenizer()
    assert model.config.bos_token_id is None
    assert encode_prompt(tokenizer, "", model) == tokenizer.encode("\n")


def test_start_token_for_prefers_a_newline_in_the_data_else_the_commonest_token():
    tokenizer = CharTokenizer.from_text("aab\nc")
    assert data.start_token_for(data.prepare("aab\nc" * 20, tokenizer, cache=False), tokenizer) == tokenizer.encode("\n")[0]
    plain = CharTokenizer.from_text("aab")
    assert data.start_token_for(data.prepare("aab" * 20, plain, cache=False), plain) == plain.encode("a")[0]


def test_the_start_token_survives_a_round_trip_through_hugging_faces_layout(tmp_path):
    """export-hf writes GPT-2's convention (bos = <|endoftext|>) for transformers, and toygpt's
    own start token beside it, so importing the folder back does not start after <|endoftext|>."""
    import json

    from toygpt.hf_format import config_from_hf, export_hf
    from toygpt.tokenizers import get_tokenizer

    gpt2 = get_tokenizer("gpt2")
    model = GPT(preset("nano", vocab_size=gpt2.vocab_size, bos_token_id=198), seed=0)  # 198 = "\n"
    folder = export_hf(model, gpt2, tmp_path / "hf", {"run": "made-here"})
    hf_config = json.loads((folder / "config.json").read_text())
    assert hf_config["bos_token_id"] == 50256 and config_from_hf(hf_config).bos_token_id == 198
    del hf_config["toygpt"]  # the real GPT-2's config.json: start after <|endoftext|>
    assert config_from_hf(hf_config).bos_token_id == 50256
