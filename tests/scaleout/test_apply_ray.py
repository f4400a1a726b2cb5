"""The ray backend on a local Ray instance with 2 CPUs: the same bytes as
the local backend, a worker process that dies mid-part, and a driver that
is interrupted and started again. Each output record is checked by id."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spacy_gptbert.scaleout import ApplySettings, apply

from .conftest import HOOKS, part_bytes, pipeline_with, read_jsonl_output
from .test_inputs import EXPECTED_IDS

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance for the module (starting one costs seconds)."""
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           # Ray's own start-up waits (agents, workers registering) are made for idle
           # machines; on a loaded 2-core test machine they can pass. Be patient.
           "RAY_agent_register_timeout_ms": "300000", "RAY_worker_register_timeout_seconds": "300"}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _start_ray()
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _start_ray(attempts: int = 3) -> None:
    """Ray gives its raylet a fixed 30 s to register; on an overloaded
    machine that can pass, so try again before failing."""
    for attempt in range(attempts):
        try:
            ray.init(num_cpus=2, include_dashboard=False)
            return
        except Exception:  # noqa: BLE001  ("The current node timed out during startup")
            ray.shutdown()
            if attempt == attempts - 1:
                raise


def settings(pipeline, **kw):
    return ApplySettings(pipeline=pipeline, part_size=3, batch_size=4, **kw)


def test_ray_output_identical_to_local(ray_address, pipeline_dir, corpus, tmp_path):
    run = settings(pipeline_dir, output_format="spacy", vectors=True)
    apply(corpus, tmp_path / "local", run, progress=False)
    result = apply(corpus, tmp_path / "ray", run, backend="ray", workers=2, progress=False)
    assert (result.n_records, result.processed_records, result.n_parts) == (22, 22, 9)
    assert part_bytes(tmp_path / "ray") == part_bytes(tmp_path / "local")
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["complete"]


def test_ray_recovers_from_a_worker_killed_mid_part(ray_address, pipeline_dir, corpus, tmp_path):
    """One actor process exits hard inside its second part; Ray Data restarts
    it and retries the part. Every id is in the output once, and the bytes
    equal a run where nothing died."""
    apply(corpus, tmp_path / "local", settings(pipeline_dir), progress=False)
    marker = tmp_path / "crashed"
    crashing = pipeline_with(pipeline_dir, tmp_path / "crashing", "test_crash_once",
                             {"marker": str(marker), "after": 5})
    result = apply(corpus, tmp_path / "ray", settings(crashing, code=str(HOOKS)), backend="ray", workers=2,
                   progress=False)
    assert marker.exists(), "no worker died: the test did not test anything"
    assert result.n_records == 22
    ids = [r["id"] for r in read_jsonl_output(tmp_path / "ray")]
    assert ids == EXPECTED_IDS and len(set(ids)) == 22
    assert part_bytes(tmp_path / "ray") == part_bytes(tmp_path / "local")


def _cli(pipeline, corpus, out, *extra):
    return [sys.executable, "-m", "spacy_gptbert", "apply", pipeline, str(corpus), str(out), "--part-size", "3",
            "--batch-size", "4", "--code", str(HOOKS), *extra]


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")


@pytest.mark.parametrize("backend,sig", [("local", signal.SIGKILL), ("ray", signal.SIGINT)])
def test_interrupted_driver_then_rerun_gives_each_id_once(ray_address, pipeline_dir, corpus, tmp_path, backend, sig):
    """Start the CLI, stop its driver once the first part is on disk (SIGKILL:
    no cleanup at all; SIGINT: Ctrl-C), run the same command again."""
    slow = pipeline_with(pipeline_dir, tmp_path / "slow", "test_slow", {"delay": 0.25})
    out = tmp_path / "out"
    extra = ["--backend", "ray", "--ray-address", ray_address, "--workers", "2"] if backend == "ray" else []
    proc = subprocess.Popen(_cli(slow, corpus, out, *extra), cwd=REPO, env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("*.jsonl")):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no part was written"
        time.sleep(0.05)
    os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, log
    done_before = len(list(out.glob("*.jsonl")))
    assert 1 <= done_before < 9, log
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    if sig == signal.SIGINT:
        assert "run the same command again" in " ".join(log.split())
    rerun = subprocess.run(_cli(slow, corpus, out, *extra), cwd=REPO, env=_env(), capture_output=True, text=True,
                           timeout=240)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"skipping {done_before} finished parts" in " ".join((rerun.stdout + rerun.stderr).split())
    ids = [r["id"] for r in read_jsonl_output(out)]
    assert sorted(ids) == sorted(EXPECTED_IDS) and len(ids) == len(set(ids)) == 22
    assert ids == EXPECTED_IDS  # and in input order
