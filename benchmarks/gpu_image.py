"""Checks for the GPU run on a bare CUDA image (no fairseq, no package registry).

    python benchmarks/gpu_image.py wheels DIR   # the wheels in DIR are what that image lacks
    python benchmarks/gpu_image.py env          # this environment holds nothing that image lacks

``wheels``: every wheel installs on CPython 3.12 / manylinux x86-64, there is one version of each
distribution (two stop ``pip install --no-index``), and every requirement of every wheel (its
``Requires-Dist``, markers taken for that platform, extras left out) is met by another carried
wheel of a matching version or is a distribution the image holds (benchmarks/gpu_image_packages.txt).
``env``: every distribution installed here is one the image holds too, so that a dry run in this
environment cannot pass on a package the image lacks (benchmarks/gpu_dry_run.sh).
Both print what they found and exit non-zero, naming each problem, when a check fails.
"""
import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # a bare interpreter: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

HERE = Path(__file__).resolve().parent
# The image's interpreter, for evaluating requirement markers
TARGET = {"implementation_name": "cpython", "implementation_version": "3.12.3", "os_name": "posix",
          "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
          "platform_system": "Linux", "platform_version": "", "python_full_version": "3.12.3",
          "python_version": "3.12", "sys_platform": "linux", "extra": ""}


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages():
    lines = (HERE / "gpu_image_packages.txt").read_text().splitlines()
    return {normalize(line) for line in lines if line.strip() and not line.startswith("#")}


def wheel_tags_fit(filename):
    """Does a wheel named ``filename`` install on CPython 3.12, manylinux x86-64?"""
    parts = filename[: -len(".whl")].split("-")
    py, abi, plat = parts[-3:]
    pys = py.split(".")
    if "cp312" in pys:
        python_fits = abi in ("cp312", "abi3", "none")
    elif abi == "abi3":  # the stable ABI of an older CPython 3 runs on 3.12
        python_fits = any(re.fullmatch(r"cp3\d+", t) and int(t[3:]) <= 12 for t in pys)
    else:  # pure Python
        python_fits = abi == "none" and any(t.startswith("py3") for t in pys)
    return python_fits and (plat == "any" or all(re.fullmatch(r"manylinux[0-9_]*_x86_64", p) for p in plat.split(".")))


def read_metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return Parser().parsestr(z.read(name).decode("utf-8"))


def check_wheels(folder):
    folder = Path(folder)
    wheels = sorted(folder.glob("*.whl"))
    problems, carried = [], {}
    if not wheels:
        problems.append(f"{folder}: no wheels")
    for wheel in wheels:
        meta = read_metadata(wheel)
        name = normalize(meta["Name"])
        if name in carried:
            problems.append(f"two versions of {name}: {carried[name][1].name} and {wheel.name}")
        carried[name] = (Version(meta["Version"]), wheel, meta)
        if not wheel_tags_fit(wheel.name):
            problems.append(f"{wheel.name}: not for CPython 3.12 on manylinux x86-64")
    image = image_packages()
    print(f"{'wheel':<60} {'MiB':>6}  requirements met by")
    for name, (version, wheel, meta) in sorted(carried.items()):
        met = []
        for line in meta.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(TARGET):
                continue  # another platform's, or an extra's
            dep = normalize(req.name)
            if dep in carried:
                if not req.specifier.contains(carried[dep][0], prereleases=True):
                    problems.append(f"{wheel.name} needs {req}, the carried one is {carried[dep][0]}")
                met.append(f"{dep} (carried)")
            elif dep in image:
                met.append(dep)
            else:
                problems.append(f"{wheel.name} needs {req}: neither carried nor in the image")
        print(f"{wheel.name:<60} {wheel.stat().st_size / 2**20:6.1f}  {', '.join(met) or '-'}")
    return problems


def check_env():
    from importlib import metadata

    image = image_packages()
    names = sorted({normalize(d.metadata["Name"]) for d in metadata.distributions()})
    print(f"{len(names)} distributions here: {' '.join(names)}")
    return [f"{n} is installed here but the image does not hold it" for n in names if n not in image]


def main(argv):
    if argv[:1] == ["wheels"] and len(argv) == 2:
        problems = check_wheels(argv[1])
    elif argv == ["env"]:
        problems = check_env()
    else:
        raise SystemExit("usage: gpu_image.py wheels DIR | gpu_image.py env")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        raise SystemExit(1)
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1:])
