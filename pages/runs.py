"""Runs: every run on this server in one table, their loss curves side by side, and one run
managed at a time (download, resume or fine-tune it on the Training page, delete), or a run
uploaded from a .zip.

UI only. Runs on disk come from ``toygpt.runs``; rows, curves and which run to show after a
delete from ``toygpt.lessons.training``; figures from ``toygpt.viz``.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import pandas as pd
import streamlit as st

from pages._shared import flash, job_registry, keep_selection, plain, runs_on_disk, show_flash
from toygpt.hf_format import gpt2_format_problems
from toygpt.jobs import TrainStatus
from toygpt.lab import is_lab_run
from toygpt.lessons.training import eval_rows, neighbour, run_rows, runs_with_curves
from toygpt.model import GPTConfig
from toygpt.run_archive import export_run_hf_zip, export_zip, import_zip
from toygpt.runs import RunError, RunInfo, delete_run, list_runs, status_now
from toygpt.status import Status
from toygpt.viz import loss_curves_figure

TRAIN_PAGE = "pages/train.py"

# --------------------------------------------------------------------------------------------
# The table and the loss curves
# --------------------------------------------------------------------------------------------


def live_snapshots() -> dict[str, TrainStatus]:
    """run id -> the snapshot of the job training it now."""
    snaps = (job.snapshot() for job in job_registry().active())
    return {snap.run_id: snap for snap in snaps if isinstance(snap, TrainStatus) and snap.run_id}


def runs_table_ui(infos: list[RunInfo]) -> None:
    rows = run_rows(infos, live_snapshots(), as_of=time.strftime("%H:%M:%S"))
    table = pd.DataFrame(rows).astype({"parameters": "Int64", "best val loss": "float64"})
    st.dataframe(table, hide_index=True, width="stretch", key="runs_table", column_config={
        "best val loss": st.column_config.NumberColumn(
            format="%.3f", help="The lowest validation loss measured while it trained (each measurement: "
            "the run's eval batches of held-out text; Home and the sidebar show this same figure)."),
        "parameters": st.column_config.NumberColumn(format="localized")})  # fmt: skip


def compare_ui(infos: list[RunInfo]) -> None:
    ids = [i.id for i in infos if i.status != Status.UNREADABLE]
    if "runs_compare" in st.session_state:
        st.session_state["runs_compare"] = [r for r in st.session_state["runs_compare"] if r in ids]
    else:
        st.session_state["runs_compare"] = runs_with_curves(ids, 3)
    cols = st.columns([3, 1], vertical_alignment="bottom")  # room for "Log scale" at 800 px
    chosen = cols[0].multiselect("Compare the loss curves of", ids, key="runs_compare")
    log_y = cols[1].toggle("Log scale", key="runs_compare_log")
    curves = {}
    for run_id in chosen:
        try:
            curves[run_id] = eval_rows(run_id)
        except (RunError, OSError) as exc:
            st.warning(f"{run_id}: {exc}")
    if not any(curves.values()):
        st.caption("Pick runs above to compare their train and validation loss.")
        return
    st.plotly_chart(loss_curves_figure(curves, log_y=log_y), width="stretch", key="runs_compare_chart")
    st.caption("Measured at each validation: solid is the training split, dashed the held-out split. "
               "When dashed climbs while solid falls, the model is memorising (overfitting).")


def lab_filter_ui(infos: list[RunInfo]) -> list[RunInfo]:
    """The learner's own runs; the Concepts lab's results only when asked (they live in the lab)."""
    from_lab = [i for i in infos if is_lab_run(i)]
    if not from_lab:
        return infos
    shown = st.toggle(f"Also list the Concepts lab's runs ({len(from_lab)})", key="runs_show_lab",
                      help="Each lab experiment saves its result as a run; the lab page shows them.")
    return infos if shown else [i for i in infos if not is_lab_run(i)]


# --------------------------------------------------------------------------------------------
# Manage one run: download, resume / fine-tune (on the Training page), delete
# --------------------------------------------------------------------------------------------


def continue_on_training_page(mode: str, key: str, run_id: str) -> None:
    """Set up the Training page's "Start a run" to resume or fine-tune ``run_id``, and go there."""
    st.session_state["train_mode"] = mode
    st.session_state[key] = run_id
    what = "Resume" if mode == "resume" else "Fine-tune"
    flash("info", f"{what} {run_id}: it is set up below; check the settings, then Start training.")
    st.switch_page(TRAIN_PAGE)


def delete_ui(info: RunInfo, busy: set[str]) -> None:
    why = ("the shipped demo model cannot be deleted" if info.read_only else
           "it is training right now: stop it first" if info.id in busy else None)
    if st.session_state.get("runs_confirm_delete") != info.id:
        st.button(f"Delete {info.id}…", key="runs_delete", disabled=why is not None, help=why,
                  on_click=lambda: st.session_state.update(runs_confirm_delete=info.id))
        return
    st.warning(f"Delete **{info.id}** and all its files for good?")
    yes, no = st.columns(2)
    if yes.button(f"Yes, delete {info.id}", key="runs_delete_yes", type="primary"):
        st.session_state.pop("runs_confirm_delete", None)
        after = neighbour(info.id, [i.id for i in list_runs()])
        try:
            delete_run(info.id)
        except (RunError, OSError) as exc:
            st.error(f"Not deleted: {exc}")
            return
        flash("success", f"Deleted {info.id}.")
        st.session_state["runs_manage_next"] = after
        st.rerun()
    no.button("Cancel", key="runs_delete_no", on_click=lambda: st.session_state.pop("runs_confirm_delete", None))


def hf_download_ui(row: Any, info: RunInfo) -> list[str]:
    """The run as a Hugging Face GPT-2 folder (zipped); the reasons GPT-2's format cannot hold it."""
    try:
        problems = gpt2_format_problems(GPTConfig.from_dict(info.model_config))
    except (TypeError, ValueError) as exc:
        problems = [f"its model config cannot be read ({exc})"]
    row.download_button(
        "Download for 🤗 transformers", data=functools.partial(export_run_hf_zip, info.id),
        file_name=f"{info.id}-hf.zip", mime="application/zip", key="runs_download_hf", on_click="ignore",
        disabled=bool(problems),
        help=("Cannot be exported: " + "; ".join(problems)) if problems else
        "A folder GPT2LMHeadModel.from_pretrained loads (same logits), with the tokenizer and a README "
        "saying how to encode text. Same as `python -m toygpt runs export-hf`.",
    )  # fmt: skip
    return problems


def manage_ui(infos: list[RunInfo]) -> None:
    ids = [i.id for i in infos]
    wanted = st.session_state.pop("runs_manage_next", None)  # a run just imported, or deleted's neighbour
    if wanted in ids:
        st.session_state["runs_manage"] = wanted
    keep_selection("runs_manage", ids)
    run_id = st.selectbox("Run", ids, key="runs_manage")
    info = next(i for i in infos if i.id == run_id)
    busy = job_registry().training_runs()
    status = status_now(info, busy)
    if status == Status.INTERRUPTED:
        st.caption("interrupted: this server is not training it (stopped or crashed mid-run, or it "
                   "trains in another process such as the CLI). Resume continues from its last save.")
    elif info.message:
        st.caption(f"{status}: {plain(info.message)}")
    row = st.container(horizontal=True)  # buttons keep their whole label and wrap when narrow
    row.download_button("Download .zip", data=functools.partial(export_zip, run_id), file_name=f"{run_id}.zip",
                        mime="application/zip", key="runs_download", on_click="ignore",
                        help="The whole run folder: weights, tokenizer, configs, logs and snapshots.")
    problems = hf_download_ui(row, info)
    if row.button("Resume…", key="runs_resume", disabled=info.read_only or run_id in busy,
                  help="Continue training it, on the Training page."):
        continue_on_training_page("resume", "train_resume_run", run_id)
    if row.button("Fine-tune…", key="runs_finetune", disabled=run_id in busy,
                  help="Train a copy of it on another corpus, on the Training page."):
        continue_on_training_page("finetune", "train_finetune_run", run_id)
    if problems:
        st.caption("GPT-2's format cannot hold this variant: " + problems[0].split(":")[0])
    delete_ui(info, busy)


def import_ui() -> None:
    """Each uploaded zip is imported once (not on every rerun while it sits in the uploader)."""
    upload = st.file_uploader("Upload a run (.zip from **Download .zip** or `python -m toygpt runs export`)",
                              type=["zip"], key="runs_import")
    if upload is None:
        return
    done = st.session_state.get("runs_imported", {})
    if upload.file_id not in done:
        try:
            run_id = import_zip(upload.getvalue())
            done[upload.file_id] = ("success", f"Imported {plain(upload.name)} as the run **{run_id}**.")
            st.session_state["runs_manage_next"] = run_id  # Manage shows the run just imported
        except RunError as exc:  # the reason may quote the zip's member names: shown literally
            done[upload.file_id] = ("error", f"{plain(upload.name)} was rejected: {plain(str(exc))}")
        st.session_state["runs_imported"] = done
        if done[upload.file_id][0] == "success":
            st.rerun()  # the sidebar and the table above list it
    kind, text = done[upload.file_id]
    getattr(st, kind)(text)


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

st.title("Runs")
st.markdown("Every model trained here (or uploaded) is a run: compare their loss curves, download "
            "one, continue training it, or delete it. Start a new one on the **Training** page.")
show_flash()
all_runs = runs_on_disk()
shown_runs = lab_filter_ui(all_runs)
if shown_runs:
    runs_table_ui(shown_runs)
    compare_ui(shown_runs)
else:
    st.info("No runs yet: start one on the Training page, or upload a run's .zip below.")
st.subheader("Manage a run")
if shown_runs:
    manage_ui(shown_runs)
else:
    st.caption("Nothing to manage yet.")
st.subheader("Upload a run")
import_ui()
