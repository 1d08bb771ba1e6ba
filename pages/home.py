"""Home: what toygpt is, and the default model's shape computed live from toygpt."""

import pandas as pd
import streamlit as st

from toygpt.model import PRESETS, flops_per_token, parameter_counts, preset, total_parameters

st.title("toygpt")
st.markdown(
    "A GPT-2 you can take apart on a laptop CPU. Tokenize text, read the architecture, train a "
    "small model, then sample from it and look inside **the model you just trained** — offline, "
    "in one app. Every number on these pages is computed live by the `toygpt` package."
)

st.subheader("The default model")
name = st.selectbox("Preset", list(PRESETS), index=list(PRESETS).index("small"), key="home_preset")
vocab = 50257 if name == "gpt2" else 65
config = preset(name, vocab_size=PRESETS[name].get("vocab_size", vocab))
cols = st.columns(4)
cols[0].metric("Parameters", f"{total_parameters(config):,}")
cols[1].metric("Layers × heads", f"{config.n_layer} × {config.n_head}")
cols[2].metric("Embedding width", config.n_embd)
cols[3].metric("Training FLOPs / token", f"{flops_per_token(config):,}")
st.caption(
    f"vocab_size={config.vocab_size} (65 = the characters of tiny shakespeare; 50257 = GPT-2's BPE), "
    f"block_size={config.block_size}, norm_position={config.norm_position!r}, "
    f"pos_encoding={config.pos_encoding!r}, tie_embeddings={config.tie_embeddings}"
)
table = pd.DataFrame(parameter_counts(config))
st.dataframe(table.groupby("group", sort=False)["params"].sum().rename("parameters"), width="stretch")
