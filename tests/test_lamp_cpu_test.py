"""configs/lamp-cpu-test.yaml (what `make test-lamp-cpu` runs) is configs/lamp-cpu.yaml with only its declared
cuts: a setting of lamp-cpu that changes reaches the test, and a new difference fails here until it is declared."""
from lib.core import pipeline
from lib.core.config import STAGES

CUTS = {
    "02_train_reward_models": {"backbones"},
    "03_reward_guided_decoding": {"policies"},
    "04_policy_accuracy": {"policies"},
    "05_generation": {"policies"},
}


def _effective(nb: str, profile: str) -> dict:
    return pipeline._defaults(pipeline.declared_parameters(pipeline.notebook_path(nb))) | \
        pipeline.parameters_for(nb, profile)


def test_lamp_cpu_test_is_lamp_cpu_with_only_its_declared_cuts():
    for nb in STAGES:
        test, full = _effective(nb, "lamp-cpu-test"), _effective(nb, "lamp-cpu")
        diff = {k for k in set(test) | set(full) if k != "profile" and test.get(k) != full.get(k)}
        assert diff == CUTS.get(nb, set()), f"{nb}: lamp-cpu-test differs from lamp-cpu in {sorted(diff)}"
        for k in diff:
            assert test[k] and set(test[k]) < set(full[k]), f"{nb}.{k}: a cut keeps a non-empty subset"
    assert _effective("04_policy_accuracy", "lamp-cpu-test")["policies"] == ["smollm2-135m"]
