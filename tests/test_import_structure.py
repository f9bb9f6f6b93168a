"""Import structure: ``import flowfm`` loads the model and sampler only (no trainer, no test hooks), checked in a
fresh interpreter."""
from __future__ import annotations

import json
import subprocess
import sys


def test_import_flowfm_loads_neither_training_nor_test_modules():
    code = ("import json, sys, flowfm; flowfm.FlowFM; flowfm.fast_sample; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('flowfm', 'tests')))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert "flowfm.model" in loaded and "flowfm.sampling" in loaded
    unwanted = [m for m in loaded if m.startswith(("flowfm.training", "flowfm.evaluation", "flowfm.cli", "tests"))
                or m in ("flowfm.compare", "flowfm.demo")]
    assert not unwanted, f"import flowfm loads {unwanted}"
