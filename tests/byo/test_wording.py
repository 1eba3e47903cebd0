"""Issue 16: messages speak the caller's language (CLI flags for CLI users, parameters for
Python users), and a bad device is the typed error, not torch's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.byo.conftest import IMAGENET_MEAN, IMAGENET_STD, OUTSIDE_SPEC, Outside, save_safetensors


def test_missing_train_data_and_bad_device_in_the_callers_words(
    outside: Outside, tmp_path: Path
) -> None:
    from lethe.cli import main
    from lethe.errors import ConfigError, ModelRegistrationError, ReferenceTrainingError
    from lethe.workflow import Lethe

    ckpt = save_safetensors(outside.state_dict, tmp_path / "w.safetensors")
    project = tmp_path / "p"
    with Lethe.init(project, origin="test.example/byo") as lt:
        pre = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        lt.register_model(
            "shop", ckpt, eval_data=outside.test, spec=OUTSIDE_SPEC, preprocessing=pre,
            export_onnx=False,
        )  # fmt: skip
        with pytest.raises(ReferenceTrainingError, match="register the model with train_data="):
            lt.train_reference("shop", progress=False)
        with pytest.raises(ModelRegistrationError, match="register it with train_data="):
            lt.train_filters("shop", progress=False)
        with pytest.raises(ConfigError, match="cpu, cuda or cuda:N"):
            lt.train_filters("shop", progress=False, device="npu")

    def cli(*args: str) -> dict:  # type: ignore[type-arg]
        res = CliRunner().invoke(main, ["--project", str(project), *args, "--json"])
        assert res.exit_code != 0, res.output
        return json.loads(res.stdout)["error"]  # type: ignore[no-any-return]

    assert "--train-data" in cli("filters", "train", "shop")["message"]
    assert "--train-data" in cli("model", "reference", "shop", "--quiet")["message"]
