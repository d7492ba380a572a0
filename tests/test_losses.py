"""`jaxrep.losses` is importable for its pure losses alone: no training, checkpoint, data or environment stack."""

import subprocess
import sys

HEAVY = ("orbax", "tensorstore", "sklearn", "matplotlib", "grain", "dm_control", "torch", "tensorboardX")


def test_importing_the_losses_loads_no_heavy_dependency():
    probe = ("import sys, jaxrep.losses as losses; "
             "assert callable(losses.beer_loss) and callable(losses.erw_warmup_loss); "
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_lazy_package_names_still_resolve():
    from jaxrep.metrics import extract_features, mig
    from jaxrep.rl import DDPG, beer_loss

    assert all(callable(f) for f in (extract_features, mig, beer_loss)) and DDPG.__name__ == "DDPG"
