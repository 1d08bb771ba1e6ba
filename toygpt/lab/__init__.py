"""Concepts lab: claims learners read about transformers, each turned into an experiment they run.

One module per experiment; each exports its parameters and result dataclasses, ``run(params,
progress=None, stop=None)`` returning a result of JSON-friendly numbers, ``reading(result)`` that
turns those numbers into a sentence ("post-LN's validation loss was 0.21 higher after 300 steps"),
``figures(result)`` (plotly charts drawn with ``toygpt.viz``'s layout and palette), and
``EXPERIMENT``, its entry in the registry. Nothing is canned: every number comes from the run
that just happened.

    claim                                         module
    "pre-LN stabilises training"                  norm_position      (pre-LN vs post-LN)
    "GPT-2 scales residual weights 1/sqrt(2N)"    residual_scaling   (with / without, by depth)
    "positional encodings: learned vs sinusoidal" positions          (learned / sinusoidal / none)
    "byte-level trades vocab for length"          tokenization       (char, byte, BPE, GPT-2)
    "a model can learn from one example"          single_example     (k steps on one sentence)
    "attention replaces recurrence"               attention_range    (how far back heads look)
    "RoPE and ALiBi read past their training"     extrapolation      (5 encodings, read at T, 2T, 4T)
    "attention vs recurrence, trained"            recurrence         (a transformer vs an LSTM its size)
    "weight tying"                                weight_tying       (tied vs untied head)
    "induction heads form"                        induction          (in-context copying appears)
    "scaling keeps paying off"                    scaling            (a ladder of sizes, compute frontier)

The shared pieces, in reading order: ``setup`` (errors, limits, the training setup, JSON numbers),
``budget`` (what an experiment costs, said before it starts), ``reporter`` (progress and Stop),
``variants`` (training one variant, the corpus, the source run), the experiments, ``registry``
(``EXPERIMENTS``, a dict built from the experiment modules), ``storage`` (results saved as runs
tagged ``lab:<experiment>`` with the numbers in ``lab.json``) and ``job`` (``LabJob``, an
experiment on a background thread under ``toygpt.jobs``' registry).

Paired trainings share the seed (so the same initial weights wherever shapes agree) and the data
order (the trainer draws batch ``n`` from a hash of (seed, n)), so the only difference between
them is the one the claim is about.

    >>> from toygpt import lab
    >>> params = lab.norm_position.NormPositionParams(preset="nano", corpus="copy", steps=20)
    >>> result = lab.run_experiment("norm-position", params)   # doctest: +SKIP
    >>> lab.reading(result)                                    # doctest: +SKIP
    "After 20 steps on copy, post-LN's validation loss was 0.12 higher than pre-LN's ..."
"""

from toygpt.lab import (
    attention_range,
    extrapolation,
    induction,
    norm_position,
    positions,
    recurrence,
    residual_scaling,
    scaling,
    single_example,
    tokenization,
    weight_tying,
)
from toygpt.lab.job import LabJob, LabStatus, live_curves
from toygpt.lab.registry import (
    EXPERIMENTS,
    experiment_of,
    figures,
    reading,
    run_experiment,
    tiny_params,
)
from toygpt.lab.setup import (
    MAX_STEPS,
    TRAIN_PRESETS,
    ExperimentSpec,
    ExperimentStopped,
    LabError,
    TrainingSetup,
)
from toygpt.lab.storage import (
    LAB_FILE,
    RESULT_ONLY_TAG,
    TAG_PREFIX,
    is_lab_run,
    lab_runs,
    load_result,
    result_to_dict,
    save_result,
)

__all__ = [
    "EXPERIMENTS", "LAB_FILE", "MAX_STEPS", "RESULT_ONLY_TAG", "TAG_PREFIX", "TRAIN_PRESETS",
    "ExperimentSpec", "ExperimentStopped", "LabError", "LabJob", "LabStatus", "TrainingSetup",
    "attention_range", "experiment_of", "extrapolation", "induction", "figures", "is_lab_run", "lab_runs",
    "live_curves", "load_result", "norm_position", "positions", "reading", "recurrence",
    "residual_scaling", "result_to_dict", "scaling", "run_experiment", "save_result", "single_example",
    "tiny_params", "tokenization", "weight_tying",
]  # fmt: skip
