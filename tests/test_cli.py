import subprocess
import sys

from typer.testing import CliRunner

from fungalzsl.cli import app


def test_help_lists_every_promised_command():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("generate", "describe", "train", "evaluate", "compare", "table", "predict", "serve", "run"):
        assert cmd in res.output


def test_user_error_is_one_line_without_traceback(tmp_path):
    from fungalzsl.config import load_yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    code = (
        "from fungalzsl.cli import app\n"
        "from fungalzsl.config import load_yaml\n"
        "import typer\n"
        "@app.command('boom')\n"
        f"def boom():\n    load_yaml({str(bad)!r})\n"
        "app(prog_name='fungalzsl')\n"
    )
    p = subprocess.run([sys.executable, "-c", code, "boom"], capture_output=True, text=True)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error:") and "mapping" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    del load_yaml


def test_help_lists_the_commands_in_pipeline_order():
    import re

    res = CliRunner().invoke(app, ["--help"], terminal_width=100)
    listed = re.findall(r"^│ ([a-z]+) ", res.output, flags=re.M)
    assert listed == [
        "generate", "describe", "train", "baseline", "evaluate", "compare", "table", "fewshot", "adapt",
        "predict", "export", "serve", "loco", "novel", "shift", "run",
    ]  # fmt: skip
