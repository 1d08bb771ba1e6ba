"""AppTest: the entry file and the home page render, and the home page's numbers are live."""

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
    assert metric(at, "Best val loss") == f"{info['best_val_loss']:.3f}"
