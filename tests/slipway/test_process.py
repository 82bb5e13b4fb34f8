from __future__ import annotations

import sys

import pytest

from slipway.errors import CommandError, CommandNotFound, CommandTimeout, SlipwayError
from slipway.process import require_binary, run


def test_run_captures_output_and_passes_arguments_verbatim():
    done = run([sys.executable, "-c", "import sys; print(sys.argv[1])", "$(id); rm -rf /"])
    assert done.returncode == 0
    assert done.stdout.strip() == "$(id); rm -rf /"


def test_failure_raises_with_the_commands_stderr_and_hint():
    with pytest.raises(CommandError) as caught:
        run(
            [
                sys.executable,
                "-c",
                "import sys; sys.stderr.write('boom: disk full\\n'); sys.exit(3)",
            ],
            hint="free some space",
        )
    error = caught.value
    assert error.returncode == 3
    assert "boom: disk full" in error.stderr
    assert "boom: disk full" in str(error) and "Fix: free some space" in str(error)
    assert isinstance(error, SlipwayError)


def test_check_false_returns_the_nonzero_exit():
    done = run([sys.executable, "-c", "raise SystemExit(4)"], check=False)
    assert done.returncode == 4


def test_missing_binary_is_command_not_found_with_hint():
    with pytest.raises(CommandNotFound, match="apt-get install nothing-here"):
        run(["slipway-no-such-binary"], hint="apt-get install nothing-here")
    with pytest.raises(CommandNotFound, match="is not installed"):
        require_binary("slipway-no-such-binary", hint="x")


def test_timeout_kills_and_raises_command_timeout():
    with pytest.raises(CommandTimeout, match=r"did not finish within 0\.5 s"):
        run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)


def test_error_message_keeps_only_the_tail_of_long_output():
    script = "import sys\nfor i in range(100): sys.stderr.write(f'line {i}\\n')\nsys.exit(1)"
    with pytest.raises(CommandError) as caught:
        run([sys.executable, "-c", script])
    assert "line 99" in str(caught.value) and "line 10\n" not in str(caught.value)
