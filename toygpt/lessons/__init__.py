"""What the pages compute, built on the core: the architecture walkthrough (``walkthrough``),
the model explorer (``explore``) and the tokenizer playground (``playground``)."""
