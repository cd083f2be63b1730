"""pyproject.toml and environment.yml declare the same dependencies.

Every runtime and `test`-extra requirement of pyproject must appear in
environment.yml with the same version constraint, and vice versa. The one allowed
difference is torch: a range in pyproject, a pinned release in environment.yml
(and in dev.sh), which must lie inside that range.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
CONDA_ONLY = {"python", "pip"}  # the interpreter and installer, not pyproject deps
PINNED_HERE = {"torch"}  # range in pyproject, exact release in environment.yml


def pyproject_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["test"]
    return _by_name(lines)


def parse_env_list(text: str) -> list[str]:
    """The list entries of an environment.yml, nested `pip:` list flattened.

    A fallback for when PyYAML is absent: enough YAML for a conda env file.
    """
    entries, section = [], None
    for line in text.splitlines():
        if re.match(r"[A-Za-z_]\w*:", line):  # a top-level key: channels, dependencies...
            section = line.split(":")[0]
        m = re.match(r"\s*-\s+(.*)$", line)
        if section != "dependencies" or not m:
            continue
        item = re.sub(r"\s+#.*$", "", m.group(1)).strip()
        if item and not item.endswith(":"):  # "- pip:" opens the nested list
            entries.append(item)
    return entries


def env_entries() -> list[str]:
    text = (ROOT / "environment.yml").read_text()
    try:
        import yaml
    except ImportError:
        return parse_env_list(text)
    entries = []
    for dep in yaml.safe_load(text)["dependencies"]:
        entries.extend(dep["pip"] if isinstance(dep, dict) else [dep])
    return entries


def environment_requirements() -> dict[str, SpecifierSet]:
    name = re.compile(r"[A-Za-z0-9._-]+")
    pip_lines = [e for e in env_entries() if name.match(e).group() not in CONDA_ONLY]
    return _by_name(pip_lines)


def _by_name(lines: list[str]) -> dict[str, SpecifierSet]:
    out = {}
    for line in lines:
        req = Requirement(line)
        key = canonicalize_name(req.name)
        assert key not in out, f"{req.name} is listed twice"
        out[key] = req.specifier
    return out


def test_environment_yml_lists_what_pyproject_lists():
    pyproject, env = pyproject_requirements(), environment_requirements()
    assert sorted(pyproject) == sorted(env), (
        f"only in pyproject: {sorted(set(pyproject) - set(env))}; "
        f"only in environment.yml: {sorted(set(env) - set(pyproject))}"
    )


@pytest.mark.parametrize("name", sorted(pyproject_requirements()))
def test_same_version_constraint(name):
    pyproject, env = pyproject_requirements(), environment_requirements()
    if name not in env:
        pytest.fail(f"{name} missing from environment.yml")
    if name in PINNED_HERE:
        (spec,) = env[name]  # exactly one specifier: the pin
        assert spec.operator == "==", f"{name}: pin an exact release in environment.yml"
        assert pyproject[name].contains(spec.version), (
            f"{name}=={spec.version} is outside pyproject's {pyproject[name]}"
        )
    else:
        assert env[name] == pyproject[name], (
            f"{name}: pyproject says {str(pyproject[name]) or 'any'}, "
            f"environment.yml says {str(env[name]) or 'any'}"
        )


def test_dev_sh_installs_the_same_torch_release():
    (env_pin,) = environment_requirements()["torch"]
    assert f"torch=={env_pin.version}" in (ROOT / "dev.sh").read_text()


def test_fallback_parser_agrees_with_yaml():
    yaml = pytest.importorskip("yaml")
    text = (ROOT / "environment.yml").read_text()
    expected = []
    for dep in yaml.safe_load(text)["dependencies"]:
        expected.extend(dep["pip"] if isinstance(dep, dict) else [dep])
    assert parse_env_list(text) == expected


def test_dev_extra_is_test_plus_ruff():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {canonicalize_name(Requirement(r).name) for r in extras["dev"]}
    assert names == {"vurn", "ruff"} and "vurn[test]" in extras["dev"]
