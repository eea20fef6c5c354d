"""The pieces of the GPU run without a package registry that can fail without running it:
benchmarks/gpu_image.py's checks of the carried wheels, where fairseq's console scripts are found
after ``pip install --target``, and benchmarks/gpu_offline.sh's refusals. The whole path runs
in benchmarks/gpu_dry_run.sh (CI)."""
import os
import subprocess
import sys
import zipfile

import pytest

from benchmarks import gpu_image
from helpers import REPO
from recipes.common import fairseq_bin


def make_wheel(folder, filename, name, version, requires=()):
    """A wheel holding only its METADATA, which is all gpu_image.py reads."""
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
            *(f"Requires-Dist: {r}" for r in requires)]
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    with zipfile.ZipFile(folder / filename, "w") as z:
        z.writestr(f"{dist}/METADATA", "\n".join(meta) + "\n")


def test_carried_wheels_that_meet_every_requirement_pass(tmp_path, capsys):
    make_wheel(tmp_path, "fairseq_fixed-0.12.3.1-cp312-cp312-manylinux_2_28_x86_64.whl", "fairseq-fixed",
               "0.12.3.1", ["omegaconf==2.3.0", "torch>=1.13", "numpy>=1.21.3",
                            'pywin32; platform_system == "Windows"', 'black==22.3.0; extra == "dev"'])
    make_wheel(tmp_path, "omegaconf-2.3.0-py3-none-any.whl", "omegaconf", "2.3.0", ["PyYAML>=5.1"])
    assert gpu_image.check_wheels(tmp_path) == []
    # torch, numpy and PyYAML are the image's; pywin32 (Windows) and black (an extra) are not asked for
    printed = capsys.readouterr().out
    assert "omegaconf (carried), torch, numpy" in printed and "pywin32" not in printed


def test_each_kind_of_bad_wheel_set_is_named(tmp_path):
    make_wheel(tmp_path, "a-1.0-py3-none-any.whl", "a", "1.0", ["b<2", "not-in-the-image"])
    make_wheel(tmp_path, "b-2.0-cp311-cp311-manylinux_2_17_x86_64.whl", "b", "2.0")
    make_wheel(tmp_path, "c-1.0-py3-none-any.whl", "c", "1.0")
    make_wheel(tmp_path, "c-1.1-py3-none-any.whl", "c", "1.1")
    problems = gpu_image.check_wheels(tmp_path)
    assert problems == [
        "b-2.0-cp311-cp311-manylinux_2_17_x86_64.whl: not for CPython 3.12 on manylinux x86-64",
        "two versions of c: c-1.0-py3-none-any.whl and c-1.1-py3-none-any.whl",
        "a-1.0-py3-none-any.whl needs b<2, the carried one is 2.0",
        "a-1.0-py3-none-any.whl needs not-in-the-image: neither carried nor in the image",
    ]
    assert gpu_image.check_wheels(tmp_path / "empty") == [f"{tmp_path / 'empty'}: no wheels"]


@pytest.mark.parametrize("filename, fits", [
    ("x-1-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
    ("x-1-py2.py3-none-any.whl", True),
    ("x-1-cp39-abi3-manylinux_2_28_x86_64.whl", True),  # the stable ABI of 3.9 runs on 3.12
    ("x-1-cp313-abi3-manylinux_2_28_x86_64.whl", False),
    ("x-1-cp311-cp311-manylinux_2_28_x86_64.whl", False),
    ("x-1-cp312-cp312-manylinux_2_28_aarch64.whl", False),
    ("x-1-cp312-cp312-macosx_11_0_arm64.whl", False),
])
def test_wheel_tags(filename, fits):
    assert gpu_image.wheel_tags_fit(filename) is fits


def test_the_image_list_holds_what_the_run_relies_on_and_not_fairseq():
    image = gpu_image.image_packages()
    assert {"torch", "numpy", "sacrebleu", "sentencepiece", "pyyaml", "scikit-learn", "pytest"} <= image
    assert not {"fairseq", "fairseq-fixed", "hydra-core", "omegaconf", "bitarray"} & image


def test_console_scripts_are_found_beside_python_then_on_path(tmp_path, monkeypatch):
    venv_bin, target_bin = tmp_path / "venv" / "bin", tmp_path / "site" / "bin"
    venv_bin.mkdir(parents=True)
    target_bin.mkdir(parents=True)
    script = target_bin / "fairseq-train"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", f"{target_bin}{os.pathsep}/usr/bin")
    assert fairseq_bin.fairseq_bin_dir() == target_bin  # pip install --target's bin/, on PATH
    (venv_bin / "fairseq-train").write_text("")
    assert fairseq_bin.fairseq_bin_dir() == venv_bin  # a venv's own comes first
    (venv_bin / "fairseq-train").unlink()
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SystemExit, match=r"fairseq-train is neither in .*venv/bin .* nor on PATH"):
        fairseq_bin.fairseq_bin_dir()


def offline(*args, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "OUT"}
    full_env.update(env or {})
    return subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_offline.sh"), *args], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=60)


def test_offline_runner_refuses_bad_input_before_installing_anything(tmp_path):
    wheels = tmp_path / "wheels-dir"
    cases = [
        (("train", "cuda", str(wheels)), {"OUT": str(tmp_path / "o")}, "unknown job 'train'"),
        (("check", "tpu", str(wheels)), {"OUT": str(tmp_path / "o")}, "unknown device 'tpu'"),
        (("check", "cpu", str(wheels)), {}, "set OUT"),
        (("check", "cpu", str(wheels)), {"OUT": str(tmp_path / "o")}, "run benchmarks/gpu_wheels.sh first"),
    ]
    for args, env, message in cases:
        proc = offline(*args, env=env)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    (wheels / "wheels").mkdir(parents=True)
    proc = offline("check", "cpu", str(wheels), env={"OUT": str(tmp_path / "o")})
    assert proc.returncode == 2 and "no wheels in" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_print_gives_the_install_line_and_both_commands():
    proc = offline("--print", ".gpu_wheels", env={"PYTHON": "python3", "SITE": "/tmp/s"})
    assert proc.returncode == 0, proc.stderr
    assert ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
            "--target /tmp/s .gpu_wheels/wheels/*.whl") in proc.stdout
    assert "bash benchmarks/gpu_offline.sh check cuda .gpu_wheels" in proc.stdout
    assert "bash benchmarks/gpu_offline.sh multi30k cuda .gpu_wheels" in proc.stdout
