"""Job logs: everything goes to the log file; the console gets a throttled progress line per job and
every warning at once (issue 7, item 9: the console was silent for minutes during long jobs)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

from neuronaudit.logs import ConsoleEcho, job_tag


def test_job_tag():
    assert job_tag("logs/default/extract_activations/lite0.log") == "extract_activations/lite0"
    assert job_tag("logs/s/explain/lite0/head.log") == "explain/lite0/head"
    assert job_tag("/tmp/x/job.log") == "job"


def test_console_echo_throttles_and_keeps_everything_in_the_log():
    log, console = io.StringIO(), io.StringIO()
    echo = ConsoleEcho(log, console, "rule/x", interval=0)  # no thread: ticks by hand
    echo.write("step 1 starting\n")
    echo.write("\rbar:  10%|#         | 1/10")
    echo.write("\rbar:  20%|##        | 2/10")
    echo.tick()
    echo.tick()  # nothing new: nothing echoed
    echo.write("\rbar: 100%|##########| 10/10\n")
    echo.tick()
    lines = console.getvalue().splitlines()
    assert lines == ["[rule/x] bar:  20%|##        | 2/10", "[rule/x] bar: 100%|##########| 10/10"]
    assert "step 1 starting" in log.getvalue() and "1/10" in log.getvalue()


def test_console_echo_heartbeat_when_silent():
    log, console = io.StringIO(), io.StringIO()
    echo = ConsoleEcho(log, console, "r", interval=0, quiet_after=0.0)
    echo.tick()
    assert "still running" in console.getvalue()


def test_job_script_progress_reaches_console(tmp_path):
    script = tmp_path / "job.py"
    log = tmp_path / "logs" / "s" / "myrule" / "w.log"
    log.parent.mkdir(parents=True)
    script.write_text(textwrap.dedent(f"""
        import logging, time
        from tqdm import tqdm
        from neuronaudit.logs import setup_job_log
        log = setup_job_log({str(log)!r})
        log.info("starting")
        for _ in tqdm(range(8), desc="work", mininterval=0):
            time.sleep(0.15)
        log.warning("3 concepts excluded: constant")
        time.sleep(0.3)
    """))
    env = {**os.environ, "NEURONAUDIT_PROGRESS": "0.2"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    console = proc.stderr.splitlines()
    progress = [ln for ln in console if ln.startswith("[myrule/w] work:")]
    assert 2 <= len(progress) <= 12, console
    assert "[myrule/w] WARNING: 3 concepts excluded: constant" in console
    text = log.read_text()
    assert "starting" in text and "8/8" in text and "3 concepts excluded" in text


def test_timed_says_failed_not_done_when_the_step_raises(caplog):
    import logging

    import pytest

    from neuronaudit.logs import timed

    log = logging.getLogger("neuronaudit.test")
    with caplog.at_level(logging.INFO), pytest.raises(ValueError):
        with timed(log, "extracting"):
            raise ValueError("bad layer")
    text = caplog.text
    assert "extracting FAILED" in text and "bad layer" in text
    assert "done in" not in text
