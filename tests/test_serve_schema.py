"""schemathesis against the server's own OpenAPI schema: no generated request, valid or not,
gets a 5xx."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import no_sleep
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.serve import Keys, Limits, create_app
from serving import running
from test_serve import reply

SERVED = "qwen2.5-coder-0.5b"  # the schema's examples name it, so they reach the strategies


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    caps = Capabilities(slots=8, n_with_stop=True, raw_prefix=True)
    lm = ScriptedLM(reply, capabilities=caps)
    engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
    keys = Keys.from_env("sk-schema", Limits(max_n=8, max_tokens=256))
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert st is not None
    with running(create_app(engine, keys=keys, served=SERVED)) as url:
        root = url.removesuffix("/v1")
        run = subprocess.run(
            [
                st,
                "run",
                f"{root}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--header",
                "Authorization: Bearer sk-schema",
                "--max-examples",
                "40",
                "--seed",
                "7",
                "--generation-deterministic",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            check=False,
        )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    # it exercised every operation, and some requests got as far as the backend
    assert "Tested: 5" in run.stdout  # health, metrics, models, chat, completions
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts is not None and int(counts[1]) == int(counts[2]) > 100
    assert lm.calls
