"""Stage 6 (notebook 06): what a reader sees. Tables of the generations and of what predicts them
(``results``), every figure (``plots``: the data and the reward models, and the writers; ``tau_plots``: tau
cells; ``gen_plots``: generation quality; ``curves``: curves over w; ``style``: the print sizes, labels and tau
captions they share), the summary.md text the README's Results section is built from (``markdown``), what a run
shows and cannot show and the paper beside it (``conclusions``: the closing texts of notebooks 02, 04 and 05, the
paper-vs-run table), where a run's tables and figures go and how they become the committed results (``outputs``)
and the sanity checks of a finished run (``sanity``)."""


def __getattr__(name: str):
    # ``lib.report`` was the module of summary_markdown before lib was split into stages.
    if name == "summary_markdown":
        import warnings

        from .markdown import summary_markdown

        warnings.warn("lib.report.summary_markdown moved to lib.report.markdown.summary_markdown",
                      FutureWarning, stacklevel=2)
        return summary_markdown
    raise AttributeError(f"module 'lib.report' has no attribute {name!r}")
