"""`import mtlsearch.client` stays light: a script that only talks to a server never loads the
training stack (torch alone takes seconds to import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.utils.server import REPO_ROOT

#: Packages a client-only process must not load: the training stack and the storage layer.
HEAVY = ("torch", "mtl_core", "storage", "sqlalchemy", "optuna", "mtlsearch.search")

PROBE = """
import json, sys
import mtlsearch.client
after_import = sorted(sys.modules)
mtlsearch.client.Client()  # the default URL and token come from the settings
mtlsearch.client.Client("http://127.0.0.1:1", token="t").close()
print(json.dumps({"import": after_import, "client": sorted(sys.modules)}))
"""


def test_importing_and_building_a_client_loads_no_training_stack() -> None:
    # A fresh interpreter: this test process has torch loaded already.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTLSEARCH_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    for stage in ("import", "client"):
        heavy = [m for m in loaded[stage] if any(m == h or m.startswith(f"{h}.") for h in HEAVY)]
        assert heavy == [], f"after {stage}: {heavy[:10]}"
    assert "mtlsearch.settings" not in loaded["import"]  # read when a Client is built
