"""toygpt: a GPT-2 that a learner can take apart on a laptop CPU.

Reading order (file order is teaching order):
tokenizers → model → data → train → jobs/checkpoint → sample → inspection → viz.

This package never imports streamlit: the dashboard in ``app.py``/``pages/`` calls it.
"""

__version__ = "0.1.0"
