"""Local mode's log stream: vLLM's output, in the API process and in the engine processes it
spawns, arrives as the API's JSON lines."""

import json
import os
import subprocess
import sys

# Routes vLLM's logs as local mode does, then logs through vLLM here and in a spawned child,
# each configuring its logging as vLLM does when an engine starts.
SCRIPT = """
import multiprocessing, sys
from pathlib import Path
from app.core.logging import log_vllm_as_json

def vllm_logger(name):
    from vllm.config.logging import LoggingConfig
    from vllm.logger import configure_logging_if_needed, init_logger
    configure_logging_if_needed(LoggingConfig())
    return init_logger(name)

def child():
    vllm_logger("vllm.child").warning("from the engine process")

if __name__ == "__main__":
    log_vllm_as_json(Path(sys.argv[1]))
    vllm_logger("vllm.parent").warning("from the API process")
    vllm_logger("vllm.parent").info("loading details")
    process = multiprocessing.get_context("spawn").Process(target=child)
    process.start()
    process.join()
"""


def test_vllm_warnings_are_json_lines_and_its_info_stays_out(tmp_path):
    script = tmp_path / "api.py"  # a file: the spawned child imports its functions from it
    script.write_text(SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": os.getcwd()},
        check=True,
    )
    lines = [json.loads(line) for line in run.stdout.splitlines()]  # every line is JSON
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("vllm.parent", "from the API process"),
        ("vllm.child", "from the engine process"),
    ]
    assert all(line["level"] == "warning" for line in lines)


# Local mode's logging, then what libraries print besides their logs: a Python warning, a tqdm
# progress bar (vLLM's checkpoint loading), the Hub's progress bar.
NOISE = """
import sys, warnings
from pathlib import Path
from app.core.logging import configure_logging, log_vllm_as_json

configure_logging()
log_vllm_as_json(Path(sys.argv[1]))
warnings.warn("a library's warning", FutureWarning)
from tqdm import tqdm
for _ in tqdm(range(3), desc="Loading checkpoint shards"):
    pass
from huggingface_hub.utils import tqdm as hub_tqdm
for _ in hub_tqdm(range(3), desc="Writing model shards"):
    pass
"""


def test_warnings_are_json_lines_and_progress_bars_stay_out(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", NOISE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": os.getcwd()},
        check=True,
    )
    [line] = [json.loads(line) for line in run.stdout.splitlines()]
    assert line["logger"] == "py.warnings" and "a library's warning" in line["message"]
    assert run.stderr == ""
