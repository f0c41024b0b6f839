"""Maps the repository's source folders into the single ``tradewire.*`` import namespace.

DESIGN.md keeps ``core/``, ``gateway/``, ``devnet/`` and ``gen/python/`` at the top of the
tree; nothing may install a top-level ``core`` or ``gateway`` module, so each folder is
installed under ``tradewire`` here. Every folder holding an ``__init__.py`` (or generated
``*_pb2.py``) becomes a package.
"""

from pathlib import Path

from setuptools import setup

ROOTS = {
    "tradewire": "gen/python/tradewire",
    "buf": "gen/python/buf",  # generated buf.validate messages the contract imports
    "tradewire.protobuf_py": "gen/protobuf_py",  # the same messages for protobuf-py (its JSON codec)
    "tradewire.core": "core",
    "tradewire.gateway": "gateway",
    "tradewire.devnet": "devnet",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for name, folder in ROOTS.items():
        root = Path(folder)
        for path in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
            if path.name == "__pycache__":
                continue
            rel = path.relative_to(root).parts
            dotted = ".".join((name, *rel))
            packages.append(dotted)
            package_dir[dotted] = path.as_posix()
    return packages, package_dir


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir, package_data={"": ["*.pyi", "py.typed"]})
