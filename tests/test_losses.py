"""`jaxrep.losses` is importable for its pure losses alone: no training, checkpoint, data or environment stack."""

import subprocess
import sys

PUBLIC = ("actor_loss", "beer_loss", "coverage_loss", "critic_loss", "elbo_loss", "erw_warmup_loss",
          "factor_classification_loss", "flow_matching_loss", "importance_weighted_nll", "potential_flow_loss",
          "repa_loss", "sequence_matching_loss", "traversal_classifier_loss")
HEAVY = ("orbax", "tensorstore", "sklearn", "matplotlib", "grain", "dm_control", "torch", "tensorboardX")


def test_importing_the_losses_loads_no_heavy_dependency():
    probe = ("import sys, jaxrep.losses as losses; "
             f"assert all(callable(getattr(losses, name)) for name in {PUBLIC!r}); "
             f"assert set(losses.__all__) >= set({PUBLIC!r}); "
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_lazy_package_names_still_resolve():
    from jaxrep.metrics import linear_probe_accuracy, mig
    from jaxrep.rl import DDPG, beer_loss

    assert all(callable(f) for f in (linear_probe_accuracy, mig, beer_loss)) and DDPG.__name__ == "DDPG"
