import ast
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = {}
exec((ROOT / "solo_clamp" / "version.py").read_text(), VERSION)


def internals_constant(name):
    """A literal assigned at the top of solo_clamp/internals.py (the tested versions live
    there, the one home of them), read without importing the package."""
    tree = ast.parse((ROOT / "solo_clamp" / "internals.py").read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"solo_clamp/internals.py assigns no {name}")


TESTED_VERSIONS = internals_constant("TESTED_VERSIONS")
SOLO_LEARN_COMMIT = internals_constant("TESTED_SOLO_COMMIT")

setup(
    name="solo-clamp",
    version=VERSION["__version__"],
    description="CLAMP (Contrastive Learning As Manifold Packing) as a solo-learn method",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["solo_clamp", "solo_clamp.*"]),
    # The configs (solo_clamp/configs/* link to scripts/*) and the zoo manifest, found with
    # importlib.resources; the zoo's weights files stay out of the wheel.
    package_data={
        "solo_clamp": ["py.typed"],
        "solo_clamp.configs": ["pretrain/**/*.yaml", "linear/**/*.yaml", "compare/*.yaml"],
        "solo_clamp.compare": ["templates/*.md.j2"],  # results.md (jinja2)
        "solo_clamp.zoo": ["index.yaml"],
    },
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        f"lightning=={TESTED_VERSIONS['lightning']}",  # internals reads its private state
        "torchmetrics>=0.11,<1.0",
        "hydra-core>=1.3",
        "omegaconf>=2.3",
        "timm>=0.9",
        "numpy>=1.24",
        "safetensors>=0.4",
        "pooch>=1.7",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scikit-learn>=1.2",
        "pyyaml>=6.0",
        "pydantic>=2.6,<3",  # solo_clamp.validation: typed schemas of configs and the zoo manifest
        "jinja2>=3",  # solo_clamp.compare's report templates
        "scipy>=1.11",  # solo_clamp.compare's paired intervals and bootstrap
    ],
    extras_require={
        # solo-learn >= 1.0.6 is not on PyPI: its repository at the tested commit (1.0.6).
        "solo": [f"solo-learn @ git+https://github.com/vturrisi/solo-learn@{SOLO_LEARN_COMMIT}"],
        "dali": ["nvidia-dali-cuda120"],
        "hub": ["huggingface_hub>=0.20"],
        "dev": ["pytest>=7.4", "ruff>=0.4"],
    },
    entry_points={"console_scripts": ["solo-clamp=solo_clamp.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
