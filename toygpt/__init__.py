"""toygpt: a GPT-2 that a learner can take apart on a laptop CPU.

Reading order (file order is teaching order; README.md lists every module):
tokenizers → model → sample → inspection → checkpoint → data → pretrained → distributed →
status, formatting → train → runs → job_process, jobs → viz → lessons → lab → worker → cli.

This package never imports streamlit: the dashboard in ``app.py``/``pages/`` calls it.
"""

__version__ = "0.1.0"
