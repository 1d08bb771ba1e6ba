"""AppTest: the entry file and the home page render, and the home page's numbers are live."""

from streamlit.testing.v1 import AppTest

from toygpt.model import preset, total_parameters


def test_home_renders_and_counts_follow_the_preset():
    at = AppTest.from_file("../app.py", default_timeout=30).run()
    assert not at.exception
    assert at.metric[0].value == f"{total_parameters(preset('small', vocab_size=65)):,}"
    at.selectbox(key="home_preset").select("gpt2").run()
    assert not at.exception
    assert at.metric[0].value == "124,439,808"  # the real GPT-2 small
