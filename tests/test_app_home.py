"""AppTest: the entry file and the home page render, and the home page's numbers are live."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from toygpt.model import preset, total_parameters
from toygpt.runs import DEMO_RUN, open_run


def metric(at: AppTest, label: str, index: int = -1) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r} on the page"
    return values[index]


def test_home_renders_and_preset_counts_follow_the_preset():
    at = AppTest.from_file("../app.py", default_timeout=30).run()
    assert not at.exception
    assert metric(at, "Parameters") == f"{total_parameters(preset('small', vocab_size=65)):,}"
    at.selectbox(key="home_preset").select("gpt2").run()
    assert not at.exception
    assert metric(at, "Parameters") == "124,439,808"  # the real GPT-2 small


def test_home_links_the_four_steps_and_shows_the_demo_card():
    at = AppTest.from_file("../app.py", default_timeout=30).run()
    links = [e.proto.page for e in at.get("page_link")]
    assert links[:4] == ["tokenizer", "architecture", "train", "explore"]
    info = open_run(DEMO_RUN).info()
    assert metric(at, "Corpus", 0) == info["corpus"]
    assert metric(at, f"Best val loss ({info['train_config']['eval_batches']} batches, in training)") == f"{info['best_val_loss']:.3f}"


def test_the_demo_loss_says_what_it_is_and_the_readme_names_both_figures():
    """Case 4 (issue 13): Home said 1.622 and README 1.607, both "val loss". Each figure now
    says which evaluation it is, and README names the one the app shows."""
    at = AppTest.from_file("../app.py", default_timeout=30).run()
    info = open_run(DEMO_RUN).info()
    batches = info["train_config"]["eval_batches"]
    label = f"Best val loss ({batches} batches, in training)"
    assert metric(at, label) == f"{info['best_val_loss']:.3f}"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    demo = readme[readme.index("## The demo model"):][:800]
    assert f"{info['best_val_loss']:.3f} on {batches} batches" in demo
    assert "1.607 on 200 batches" in demo  # `runs eval`, as checkpoints/README.md records it
