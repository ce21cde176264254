"""Stage 6 (notebook 06): what a reader sees. Tables of the generations and of what predicts them
(``results``), every figure (``plots``: the data and the reward models, and the writers; ``tau_plots``: tau
cells; ``gen_plots``: generation quality; ``curves``: curves over w; ``style``: the print sizes, labels and tau
captions they share), the summary.md text the README's Results section is built from (``markdown``) and the
sanity checks of a finished run (``sanity``)."""


def __getattr__(name: str):
    # ``lib.report`` was the module of summary_markdown before lib was split into stages.
    if name == "summary_markdown":
        import warnings

        from .markdown import summary_markdown

        warnings.warn("lib.report.summary_markdown moved to lib.report.markdown.summary_markdown",
                      FutureWarning, stacklevel=2)
        return summary_markdown
    raise AttributeError(f"module 'lib.report' has no attribute {name!r}")
