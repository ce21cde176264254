import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _model_mappings_per_test():
    """A profile's ``common.models`` maps model names to folders for the whole process (lib.core.models.register, run
    by every ``parameters_for``): each test starts with none and leaves none behind, whatever profile it loaded
    (paper-dry maps the paper's names to tiny checkpoints)."""
    from lib.core import models

    saved = dict(models._REGISTERED)
    models._REGISTERED.clear()
    yield
    models._REGISTERED.clear()
    models._REGISTERED.update(saved)
