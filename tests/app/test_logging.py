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


# Local mode's logging set up after the Hub (and so tqdm) is imported, as in the API, then what
# libraries print besides their logs: a Python warning, the Hub's progress bar, transformers'
# and diffusers' log records and progress bars (loading weights, a pipeline's components), and
# a tqdm bar in a process started afterwards (vLLM's checkpoint loading in its engine process).
NOISE = """
import subprocess, sys, warnings
from pathlib import Path
import huggingface_hub
from app.core.logging import configure_logging, log_libraries_as_json, log_vllm_as_json

configure_logging()
log_vllm_as_json(Path(sys.argv[1]))
log_libraries_as_json("transformers", "diffusers")
warnings.warn("a library's warning", FutureWarning)
from huggingface_hub.utils import tqdm as hub_tqdm
for _ in hub_tqdm(range(3), desc="Writing model shards"):
    pass
from transformers.utils import logging as transformers_logging
from diffusers.utils import logging as diffusers_logging
for library in (transformers_logging, diffusers_logging):
    library.get_logger(library.__name__).warning("a model library's warning")
    for _ in library.tqdm(range(3), desc="Loading weights"):
        pass
child = "from tqdm import tqdm\\nfor _ in tqdm(range(3), desc='Loading checkpoint shards'): pass"
subprocess.run([sys.executable, "-c", child], check=True)
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
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["logger"] for line in lines] == [
        "py.warnings",
        "transformers.utils.logging",
        "diffusers.utils.logging",
    ]
    assert "a library's warning" in lines[0]["message"]
    assert all(line["message"] == "a model library's warning" for line in lines[1:])
    assert run.stderr == ""


# The API's stderr made JSON lines, then what is written there below logging: a C library's
# line (a raw write to fd 2), a started process's warning (with its indented source line), a
# line without its newline, and the message of the process's exit (drained as it exits).
STDERR = """
import os, subprocess, sys
from app.core.logging import configure_logging, log_stderr_as_json

configure_logging()
log_stderr_as_json()
os.write(2, b"[W utils.cpp:68] Warning: NUMA binding\\n")
child = "import sys; sys.stderr.write('x.py:9: FutureWarning: deprecated\\\\n  call()\\\\n')"
subprocess.run([sys.executable, "-c", child], check=True)
os.write(2, b"Triton is not installed")
raise SystemExit("stopped: the port is taken")
"""


def test_what_reaches_stderr_is_json_lines_too():
    run = subprocess.run(
        [sys.executable, "-c", STDERR],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": os.getcwd()},
    )
    assert run.returncode == 1 and run.stderr == ""
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert {line["logger"] for line in lines} == {"stderr"}
    assert [line["message"] for line in lines] == [
        "[W utils.cpp:68] Warning: NUMA binding",
        "x.py:9: FutureWarning: deprecated\n  call()",
        "Triton is not installedstopped: the port is taken",
    ]
