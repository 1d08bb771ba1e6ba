"""The trainer/run boundary (issue 12 item 5): a saver is handed values (weights, AdamW state,
counters), never the trainer; resume assembles everything from one call. Training numerics are
pinned to fp32 (bf16 autocast differs between CPUs)."""

from __future__ import annotations

import ast
import copy
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from toygpt import data as corpora
from toygpt.model import GPT, preset
from toygpt.resume import plan_resume, resume
from toygpt.runs import DEMO_RUN, RunError, RunWriter, create_run, open_run
from toygpt.tokenizers import CharTokenizer
from toygpt.train import TrainConfig, make_optimizer, optimizer_tensors
from toygpt.trainer import Trainer, TrainState

ROOT = Path(__file__).resolve().parent.parent
CONFIG = TrainConfig(max_steps=12, eval_interval=4, eval_batches=2, log_interval=1, checkpoint_interval=0,
                     max_snapshots=3, precision="fp32", warmup_steps=3, device="cpu")  # fmt: skip


def corpus():
    text = corpora.load_corpus("copy")
    tokenizer = CharTokenizer.from_text(text)
    return text, tokenizer, corpora.prepare(text, tokenizer)


def new_run(name: str, model: GPT, tokenizer, config: TrainConfig = CONFIG):
    return create_run(name=name, corpus="copy", tokenizer_spec="char", tokenizer=tokenizer, model=model, train_config=config)


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class RecordingSaver:
    """A saver with no folder: it keeps copies of what it is handed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def save_latest(self, weights, optimizer_state, state):
        self.calls.append(("latest", (weights, optimizer_state, state)))
        self.kept = ({k: v.clone() for k, v in weights.items()}, dict(optimizer_state), state)

    def save_best(self, weights, state):
        self.calls.append(("best", (weights, state)))

    def save_snapshot(self, weights, step, keep):
        self.calls.append(("snapshot", (weights, step, keep)))

    def on_event(self, event):
        pass


def test_the_trainer_hands_its_saver_values_and_a_copy_of_its_counters():
    _, tokenizer, token_data = corpus()
    saver = RecordingSaver()
    trainer = Trainer(GPT(preset("nano", vocab_size=tokenizer.vocab_size), seed=0), token_data, CONFIG, saver=saver)
    trainer.run()
    kinds = {kind for kind, _ in saver.calls}
    assert kinds == {"latest", "best", "snapshot"}
    for _, args in saver.calls:
        assert not any(isinstance(a, Trainer | torch.nn.Module | torch.optim.Optimizer) for a in args)
        tensors = [a for a in args if isinstance(a, dict)]
        assert tensors and all(isinstance(t, torch.Tensor) for d in tensors for t in d.values())
    snapshot_steps = [args[1] for kind, args in saver.calls if kind == "snapshot"]
    assert snapshot_steps == [0] and all(args[2] == 3 for kind, args in saver.calls if kind == "snapshot")
    best_states = [args[1] for kind, args in saver.calls if kind == "best"]
    assert [s.step for s in best_states] == sorted(s.step for s in best_states)  # frozen when saved ...
    assert best_states[0].step == 0 and trainer.state.step == 12  # ... not the trainer's live counters
    assert all(s is not trainer.state for s in best_states)
    weights, optimizer_state, state = saver.kept
    assert state.step == 12 and same_tensors(weights, {k: v for k, v in trainer.model.state_dict().items()})
    assert same_tensors(optimizer_state, optimizer_tensors(trainer.model, trainer.optimizer))


def test_a_saver_given_only_values_writes_a_run_that_resumes_and_continues_identically():
    """Train 12 steps straight; separately, 6 steps with no saver at all, then hand the run
    writer the values, resume from the folder and train the other 6: the same weights, bit for
    bit (fp32), and the resumed counters and AdamW state are the ones handed over."""
    _, tokenizer, token_data = corpus()
    start = GPT(preset("nano", vocab_size=tokenizer.vocab_size), seed=0)
    straight = Trainer(copy.deepcopy(start), token_data, CONFIG)
    straight.run()

    half = Trainer(copy.deepcopy(start), token_data, CONFIG)
    with half.session():
        for _ in range(6):
            assert half.train_step()
    run = new_run("values", start, tokenizer)
    handed_optimizer = optimizer_tensors(half.model, half.optimizer)
    run.save_latest(half.model.state_dict(), handed_optimizer, half.state.copy())

    resumed = resume(run.id)
    assert resumed.plan.step == resumed.state.step == 6
    assert resumed.state == half.state
    assert same_tensors(resumed.optimizer_state, handed_optimizer)
    assert same_tensors(resumed.model.state_dict(), half.model.state_dict())
    assert resumed.plan.config == CONFIG
    rest = Trainer(resumed.model, resumed.data, resumed.plan.config, state=resumed.state,
                   optimizer_state=resumed.optimizer_state, saver=resumed.run)  # fmt: skip
    end = rest.run()
    assert end["step"] == 12
    assert same_tensors(rest.model.state_dict(), straight.model.state_dict())
    on_disk = open_run(run.id).load_model("latest").model.state_dict()
    assert same_tensors(on_disk, straight.model.state_dict())


def test_a_run_writer_needs_no_trainer():
    """Weights and AdamW state made by hand (a plain optimizer loop) saved as the latest,
    best and a snapshot: everything reads back as handed, and resumes."""
    text, tokenizer, token_data = corpus()
    model = GPT(preset("nano", vocab_size=tokenizer.vocab_size), seed=1)
    run = new_run("by-hand", model, tokenizer)
    optimizer = make_optimizer(model, CONFIG, torch.device("cpu"))
    x, y = token_data.get_batch("train", 4, 16, torch.Generator().manual_seed(0))
    for _ in range(3):
        model(x, y)[1].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    state = TrainState(step=3, elapsed=1.5, tokens_seen=192, best_val_loss=2.5, last_val_loss=2.5, snapshots=[0])
    run.save_latest(model.state_dict(), optimizer_tensors(model, optimizer), state)
    run.save_best(model.state_dict(), state)
    run.save_snapshot(model.state_dict(), 3, keep=2)
    saved_state, saved_optimizer = open_run(run.id).training_state()
    assert saved_state == state and same_tensors(saved_optimizer, optimizer_tensors(model, optimizer))
    assert same_tensors(open_run(run.id).load_model("best").model.state_dict(), model.state_dict())
    assert open_run(run.id).info()["step"] == 3 and open_run(run.id).info()["best_val_loss"] == 2.5
    assert open_run(run.id).list_snapshots() == [3]
    snapshot = open_run(run.id).load_snapshot(3).state_dict()  # int8: close, not equal
    assert all(torch.allclose(snapshot[k], v, atol=0.02) for k, v in model.state_dict().items())
    resumed = resume(run.id)
    assert resumed.state.step == 3 and resumed.data.vocab_size == token_data.vocab_size


def test_resume_returns_everything_the_trainer_and_the_cli_need():
    _, tokenizer, token_data = corpus()
    run = new_run("whole", GPT(preset("nano", vocab_size=tokenizer.vocab_size), seed=2), tokenizer)
    trainer = Trainer(open_run(run.id).load_model("latest").model, token_data, CONFIG.replace(max_steps=5), saver=run)
    trainer.run()
    resumed = resume(run.id, CONFIG.replace(max_steps=9))
    assert {f.name for f in fields(resumed)} == {"plan", "run", "model", "tokenizer", "data", "state", "optimizer_state"}
    assert resumed.run.id == run.id and resumed.tokenizer.to_dict() == tokenizer.to_dict()
    assert resumed.plan.step == resumed.state.step == 5 and resumed.plan.config.max_steps == 9
    assert resumed.plan.saved_config == CONFIG and resumed.plan.model_config == trainer.model.config
    assert same_tensors(resumed.model.state_dict(), trainer.model.state_dict())
    assert same_tensors(resumed.optimizer_state, optimizer_tensors(trainer.model, trainer.optimizer))
    assert torch.equal(resumed.data.train, token_data.train) and torch.equal(resumed.data.val, token_data.val)
    assert open_run(run.id).train_config().max_steps == 9  # run.json records what it continues with


def test_plan_resume_applies_the_page_rule_and_the_cli_flags_without_loading_weights():
    _, tokenizer, _ = corpus()
    run = new_run("planned", GPT(preset("nano", vocab_size=tokenizer.vocab_size), seed=3), tokenizer)
    run.update_info(step=40)
    (run.path / "model.safetensors").unlink()  # a plan reads run.json and config.json only
    page = plan_resume(run.id, more_steps=25)
    assert (page.step, page.config.max_steps, page.config.max_seconds) == (40, 65, None)
    cli = plan_resume(run.id, max_steps=100, learning_rate=1e-3)
    assert cli.config == CONFIG.replace(max_steps=100, learning_rate=1e-3) and cli.saved_config == CONFIG
    with pytest.raises(ValueError, match="unknown train config keys"):
        plan_resume(run.id, not_a_setting=1)
    with pytest.raises(RunError, match="read-only; fine-tune it"):
        plan_resume(DEMO_RUN)
    with pytest.raises(RunError, match="no run 'ghost'"):
        plan_resume("ghost")


def test_resume_checks_before_loading_and_only_the_writer_changes_the_folder():
    _, tokenizer, token_data = corpus()
    run = new_run("careful", GPT(preset("nano", vocab_size=tokenizer.vocab_size), seed=4), tokenizer)
    Trainer(open_run(run.id).load_model("latest").model, token_data, CONFIG.replace(max_steps=4), saver=run).run()
    run.on_event({"type": "step", "step": 7, "loss": 1.0})  # logged after the last save
    (run.path / "optimizer.safetensors").write_bytes(b"not read before the check")
    seen = []

    def refuse(model_config, config, text):
        seen.append((model_config.n_layer, config.max_steps, len(text)))
        raise MemoryError("too big")

    with pytest.raises(MemoryError, match="too big"):
        resume(run.id, check=refuse)
    assert seen == [(preset("nano").n_layer, CONFIG.max_steps, len(corpora.load_corpus("copy")))]
    assert max(r["step"] for r in open_run(run.id).read_metrics()) == 7  # nothing was changed


def test_reader_only_resume_leaves_the_logs_and_the_writer_trims_them():
    _, tokenizer, token_data = corpus()
    run = new_run("trim", GPT(preset("nano", vocab_size=tokenizer.vocab_size), seed=5), tokenizer)
    Trainer(open_run(run.id).load_model("latest").model, token_data, CONFIG.replace(max_steps=4), saver=run).run()
    run.on_event({"type": "step", "step": 7, "loss": 1.0})
    reader = resume(run.id, write=False)
    assert reader.run is None and max(r["step"] for r in open_run(run.id).read_metrics()) == 7
    writer = resume(run.id)
    assert writer.run is not None and max(r["step"] for r in open_run(run.id).read_metrics()) == 4


def _names_used(path: Path) -> set[str]:
    """Every name and attribute a file's code refers to (imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[-1])
    return names


@pytest.mark.parametrize("path", ["pages/train.py", "toygpt/cli/train.py", "toygpt/pipeline.py"])
def test_the_cli_the_page_and_the_job_resume_through_the_one_call(path):
    """No caller assembles a resume from the run's parts any more (it took ~10 calls)."""
    names = _names_used(ROOT / path)
    assert names & {"plan_resume", "resume"}
    assert not names & {"training_state", "load_optimizer_tensors", "TrainState", "resume_config",
                        "truncate_after", "recover"}  # fmt: skip


def test_the_demo_is_never_written():
    with pytest.raises(RunError, match="read-only"):
        RunWriter(open_run(DEMO_RUN).path)
