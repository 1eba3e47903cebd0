"""The install resolves a working torch + torchvision pair: timm imports and builds a model."""

from __future__ import annotations


def test_timm_imports_and_builds_a_model() -> None:
    import timm
    import torch
    import torchvision

    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    out = model.eval()(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 3)
    # A CPU-only local torch build paired with the registry's torchvision fails to import.
    assert torch.__version__.split("+")[0].split(".")[:2] == ["2", "14"]
    assert torchvision.__version__.startswith("0.29")


def test_filters_and_metrics_import_without_the_log_store() -> None:
    # A training job (say, on a GPU machine) needs torch, not SQLAlchemy or cryptography:
    # `lethe.Lethe` loads the workflow only when it is used.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import lethe, lethe.filters, lethe.metrics, lethe.models, lethe.data\n"
        "heavy = sorted({'sqlalchemy', 'cryptography', 'alembic'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
        "from lethe import Lethe\n"
        "assert Lethe.__module__.startswith('lethe.workflow')\n"
        "assert 'sqlalchemy' in sys.modules\n"
        "import lethe as l\n"
        "try:\n"
        "    l.Nope\n"
        "except AttributeError as e:\n"
        "    assert 'Nope' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
