"""Settings are defined once (egoclean.config): options, defaults, help and checks all come from the field,
and every bad value is one line naming the option, before anything is downloaded or written."""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from egoclean.config import HelpFormatter, add_options, from_args, setting, validate
from egoclean.errors import SettingError
from fisheye import cli as fisheye_cli
from fisheye.settings import Phase1Settings
from VJEPA.settings import EncodeSettings


@dataclass(frozen=True)
class Toy:
    stride_s: float = setting(1.0, "seconds between windows", low=0.0, low_open=True)
    count: int = setting(3, "how many", low=1, high=10)
    mode: str = setting("a", "which mode", choices=("a", "b"))
    hfov_deg: float | None = setting(None, "field of view", low=1.0, high=170.0, flag="--hfov")
    force: bool = setting(False, "redo")
    out: Path = setting(Path("data"), "where")


def parse(*argv: str) -> Toy:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_options(parser, Toy)
    return validate(from_args(Toy, parser.parse_args(list(argv))))


def test_defaults_and_types_come_from_the_fields() -> None:
    assert parse() == Toy()
    got = parse("--stride-s", "0.5", "--count", "4", "--mode", "b", "--hfov", "90", "--force", "--out", "x")
    assert got == Toy(stride_s=0.5, count=4, mode="b", hfov_deg=90.0, force=True, out=Path("x"))


@pytest.mark.parametrize(
    "argv",
    [
        ["--stride-s", "1", "--stride-s", "2"],
        ["--mode", "a", "--count", "4", "--mode", "b"],
        ["--hfov", "90", "--hfov", "90"],  # the same value twice is still a sign of a pasted line
    ],
)
def test_an_option_given_twice_is_refused_by_name(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse alone keeps the last value and runs with it; one of the two was not what the user meant."""
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {argv[-2]}" in last or f"argument {argv[-2]}/" in last
    assert "given twice" in last


def test_each_option_once_still_parses_after_a_first_parse() -> None:
    """The record of options given lives in each parse's namespace, not the parser: parsing again works."""
    parser = argparse.ArgumentParser()
    add_options(parser, Toy)
    for _ in range(2):
        assert from_args(Toy, parser.parse_args(["--count", "5"])).count == 5


def test_help_shows_each_default_once() -> None:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_options(parser, Toy)
    text = " ".join(parser.format_help().split())
    assert "seconds between windows (default: 1.0)" in text
    assert "how many (default: 3)" in text and "--hfov HFOV_DEG" not in text


DESCRIPTION = """\
A first paragraph long enough to need wrapping, whose source breaks its line
here, in mid-sentence.

commands:
  run    a list item whose text is far too long for one line of a narrow terminal and goes on
         on a second source line indented to the item's text
  stop   short

examples:
  tool run --long-option value         # a comment long enough to wrap on a narrow terminal
  tool stop                            # another"""


@pytest.mark.parametrize("width", [60, 80, 200])
def test_help_text_is_rewrapped_to_the_terminal_with_hanging_indents(width: int, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    parser = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=HelpFormatter)
    text = parser.format_help()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert " ".join(text.split()).count(" ".join(DESCRIPTION.split())) == 1  # every word, in order
    first = next(i for i, line in enumerate(lines) if line.startswith("A first"))
    paragraph = lines[first : lines.index("", first)]
    assert " ".join(paragraph) == " ".join(DESCRIPTION.split("\n\n")[0].split())
    for line, following in itertools.pairwise(paragraph):  # filled: no break where the source broke
        assert len(line) + 1 + len(following.split()[0]) > width - 2  # argparse fills to COLUMNS - 2
    item = next(i for i, line in enumerate(lines) if line.startswith("  run    "))
    stop = next(i for i, line in enumerate(lines) if line.startswith("  stop   "))
    assert all(line.startswith(" " * 9) and line[9] != " " for line in lines[item + 1 : stop])
    examples = lines[lines.index("examples:") + 1 :]
    examples = examples[: examples.index("")]
    comment_column = examples[0].index("#")
    for line in examples[1:]:
        if line.strip() and not line.lstrip().startswith("tool"):
            assert len(line) - len(line.lstrip()) == comment_column  # a comment's wrap hangs under '#'


@pytest.mark.parametrize("width", range(40, 90))
def test_help_never_splits_an_option_name(width: int, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    description = "Use --max-fetch-concurrency."
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    parser.add_argument("--n", help="the CPUs that --max-fetch-concurrency and --embed-actors leave over")
    words = parser.format_help().split()
    assert "--max-fetch-concurrency" in words and words.count("--max-fetch-concurrency.") == 1
    assert "--embed-actors" in words and not any(w.endswith("-") for w in words if w != "-h,")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stride-s", "nan"], "--stride-s nan: must be a finite number"),
        (["--stride-s", "inf"], "--stride-s inf: must be a finite number"),
        (["--stride-s", "0"], "--stride-s 0.0: must be > 0"),
        (["--count", "0"], "--count 0: must be >= 1 and <= 10"),
        (["--hfov", "0.5"], "--hfov 0.5: must be >= 1 and <= 170"),
    ],
)
def test_bad_values_name_the_option(argv: list[str], message: str) -> None:
    with pytest.raises(SettingError) as err:
        parse(*argv)
    assert str(err.value) == message


def test_python_callers_get_the_same_checks() -> None:
    with pytest.raises(SettingError, match="--crf -5: must be >= 0 and <= 51"):
        validate(Phase1Settings(crf=-5))
    with pytest.raises(SettingError, match="--window 7: must be even"):
        validate(EncodeSettings(window=7))
    with pytest.raises(SettingError, match="--device bogus: must be auto, cpu, mps, cuda or cuda:N"):
        validate(EncodeSettings(device="bogus"))
    validate(EncodeSettings(device="cuda:1"))  # a well-formed name passes; whether it exists is the loader's


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--crf", "-5"], "--crf"),
        (["--crf", "100"], "--crf"),
        (["--hfov", "200"], "--hfov"),
        (["--worker", "nobody"], "--worker"),
        (["--clips", "5-1"], "--clips"),
        (["--max-retries", "-1"], "--max-retries"),
    ],
)
def test_phase1_bad_setting_fails_before_touching_the_source(
    argv: list[str], option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The source folder does not even exist: the setting must be refused first, with one line."""
    code = fisheye_cli.main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {option} "), err
    assert not (tmp_path / "out").exists()


def test_unknown_preset_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        fisheye_cli.main(["--preset", "bogus", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "--preset: invalid choice: 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--stride-s", "nan"], "--stride-s"),
        (["--stride-s", "inf"], "--stride-s"),
        (["--batch-size", "100000000"], "--batch-size"),
        (["--device", "bogus"], "--device"),
        (["--window", "7"], "--window"),
    ],
)
def test_encode_bad_setting_is_one_line(
    argv: list[str], option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from VJEPA import encode

    assert encode.main([str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {option} "), err


def test_decode_is_one_setting_for_both_phases():
    """Phase 1 and phase 2 both decode; `bash run.sh` shows one --decode, so the two fields must be the
    same setting (one definition, egoclean.hwdecode.decode_setting), not two that drift apart."""
    import dataclasses

    from egoclean.config import spec_of
    from fisheye.settings import Phase1Settings
    from VJEPA.settings import EncodeSettings

    phase1, phase2 = (
        {f.name: f for f in dataclasses.fields(c)}["decode"] for c in (Phase1Settings, EncodeSettings)
    )
    assert spec_of(phase1) == spec_of(phase2) and phase1.default == phase2.default == "cpu"
