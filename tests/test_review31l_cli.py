"""What a newcomer meets first at ``swarm``: help that says what each command does and shows
an example, a near-miss command or option answered with the one meant, an unknown action named
before its input is read."""

from __future__ import annotations

import pytest

from swarm.cli import main


def test_swarm_alone_shows_every_command_with_what_it_does_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """``swarm`` said only "the following arguments are required: command"."""
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "delegate a task (primary drafts, reviewer checks)" in err, err
    assert "Examples:" in err and 'swarm delegate "Summarise' in err


@pytest.mark.parametrize("command", [
    ["delegate"], ["research"], ["consensus"], ["run"], ["config", "check"], ["threads", "import"], ["health"],
    ["doctor"], ["index"], ["index", "build"], ["index", "stats"], ["models"], ["models", "pull"], ["models", "list"],
])
def test_each_commands_help_says_what_it_does_and_shows_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``swarm delegate --help`` showed the flags and nothing of what the command does or how to call it."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    usage, _, rest = out.partition("\n\n")
    assert rest.strip() and not rest.startswith(("positional arguments", "options")), out  # a description first
    assert "example" in out and f"\n  swarm {command[0]}" in out.replace("swarm --config my.yaml ", "swarm "), out


def test_a_mistyped_command_is_answered_with_the_one_meant(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dlegate", "hi"])
    assert exited.value.code == 2
    assert "invalid choice: 'dlegate'" in (err := capsys.readouterr().err) and "did you mean 'delegate'?" in err, err
    with pytest.raises(SystemExit):
        main(["models", "pul"])
    assert "did you mean 'pull'?" in capsys.readouterr().err


def test_a_mistyped_option_is_refused_by_its_command_naming_the_one_meant(capsys: pytest.CaptureFixture[str]) -> None:
    """``swarm delegate hi --tire fast`` printed the top level's usage, ``swarm [-h] {delegate,...}``."""
    with pytest.raises(SystemExit) as exited:
        main(["delegate", "hi", "--tire", "fast"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: swarm delegate") and "did you mean '--tier'?" in err, err
    with pytest.raises(SystemExit):
        main(["models", "list", "--jsn"])
    assert "did you mean '--json'?" in capsys.readouterr().err


def test_an_unknown_image_action_is_named_with_the_valid_ones_before_its_input_is_read(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """``swarm run image_tools upscle`` said "input.image: give one of image, path, url, key"."""
    assert main(["run", "image_tools", "upscle", "-q"]) == 1
    err = capsys.readouterr().err
    assert "unknown action 'upscle' for project 'image_tools'; valid: pipeline, remove_background, upscale" in err, err
    assert "input.image" not in err
