"""Home: what toygpt is, the four steps, the demo model's card, and any preset's size — all live."""

import pandas as pd
import streamlit as st

from toygpt.model import (
    PRESETS,
    GPTConfig,
    flops_per_token,
    parameter_counts,
    preset,
    total_parameters,
)
from toygpt.runs import DEMO_RUN, RunError, open_run

st.title("toygpt")
st.markdown(
    "A GPT-2 you can take apart on a laptop CPU. Tokenize text, read the architecture, train a "
    "small model, then sample from it and look inside **the model you just trained** — offline, "
    "in one app. Every number on these pages is computed live by the `toygpt` package."
)

STEPS = [
    ("pages/tokenizer.py", "1 · Tokenize", ":material/text_fields:",
     "Text becomes token ids: characters, bytes, a BPE you train here, GPT-2's encodings."),
    ("pages/architecture.py", "2 · Read the architecture", ":material/account_tree:",
     "Follow your text through every step of the forward pass, with the code beside it."),
    ("pages/train.py", "3 · Train", ":material/model_training:",
     "Train a model on your CPU in the background; watch the loss fall."),
    ("pages/explore.py", "4 · Sample and look inside", ":material/search_insights:",
     "Generate, step through each sampling stage, see every head's attention."),
]
for column, (path, label, icon, blurb) in zip(st.columns(len(STEPS)), STEPS, strict=True):
    with column.container(border=True):
        st.page_link(path, label=label, icon=icon)
        st.caption(blurb)


def model_summary(config: GPTConfig) -> str:
    return (
        f"{config.n_layer} layers × {config.n_head} heads, n_embd={config.n_embd}, "
        f"block_size={config.block_size}, vocab_size={config.vocab_size}, "
        f"{config.norm_position}-LN, {config.pos_encoding} positions"
    )


st.subheader("The demo model")
try:
    demo = open_run(DEMO_RUN)
    info, config = demo.info(), demo.model_config()
except (RunError, ValueError, OSError) as exc:  # CheckpointError is a ValueError
    st.warning(f"The shipped demo model cannot be read: {exc}. Train your own on the Training page.")
else:
    with st.container(border=True):
        cols = st.columns(4)
        cols[0].metric("Corpus", str(info.get("corpus", "?")))
        cols[1].metric("Tokenizer", str(info.get("tokenizer", "?")))
        cols[2].metric("Parameters", f"{total_parameters(config):,}")
        best = info.get("best_val_loss")
        batches = (info.get("train_config") or {}).get("eval_batches", "?")
        cols[3].metric(
            f"Best val loss ({batches} batches, in training)", f"{best:.3f}" if isinstance(best, int | float) else "—",
            help=f"Mean cross-entropy per character on {batches} random batches of the held-out last 10% "
            f"of the corpus, measured while it trained (best at step {info.get('best_step', '?')}). "
            "`python -m toygpt runs eval` measures the same weights on 200 batches: the README "
            "quotes that figure, labelled so.")
        st.caption(f"{model_summary(config)} · trained {info.get('step', '?')} steps. "
                   "It is the sidebar's default model; any run you train joins the list.")

st.subheader("How big is each preset?")
name = st.selectbox("Preset", list(PRESETS), index=list(PRESETS).index("small"), key="home_preset")
config = preset(name, vocab_size=PRESETS[name].get("vocab_size", 65))
cols = st.columns(4)
cols[0].metric("Parameters", f"{total_parameters(config):,}")
cols[1].metric("Layers × heads", f"{config.n_layer} × {config.n_head}")
cols[2].metric("Embedding width", config.n_embd)
cols[3].metric("Training FLOPs / token", f"{flops_per_token(config):,}")
st.caption(
    f"{model_summary(config)} (65 = the characters of tiny shakespeare; 50257 = GPT-2's BPE), "
    f"tie_embeddings={config.tie_embeddings}"
)
table = pd.DataFrame(parameter_counts(config))
st.dataframe(table.groupby("group", sort=False)["params"].sum().rename("parameters"), width="stretch")
