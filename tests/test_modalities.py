"""Modalities are plug-ins: registries agree, and nothing outside pipeline/modalities branches on a name."""
import ast

import pytest

from conftest import ROOT
from pipeline import config
from pipeline.modalities import SOURCES, SPECS, evaluation, plugins
from pipeline.modalities.base import Modality


def test_the_registries_name_the_same_plug_ins_and_feed_the_config():
    assert set(SPECS) == set(plugins.CLASSES) == set(evaluation.EVALUATIONS) == {"image", "shape", "motion", "nerf"}
    assert config.CHOICES["dataset.modality"] == tuple(SPECS) and set(config.CHOICES["dataset.source"]) == set(SOURCES)
    for name in plugins.CLASSES:
        m = plugins.build(name, resolution=8)
        assert isinstance(m, Modality) and m.name == name and (m.folder_suffixes or m.instance_is_folder)
        assert len(m.factor_names) == len(m.factor_kinds) > 0
        scorer = evaluation.of(m)
        assert callable(scorer.reference) and callable(scorer.scores) and callable(scorer.count)
    with pytest.raises(ValueError, match=r"unknown modality 'audio' \(known: image, shape, motion, nerf\)"):
        plugins.build("audio", resolution=8)
    with pytest.raises(config.ConfigError, match=r"^dataset.modality: must be one of 'image', 'shape', 'motion', 'nerf', got "):
        config.from_dict({"dataset": {"modality": "audio"}})
    with pytest.raises(config.ConfigError, match=r"^dataset.source: srn is not a source of dataset.modality image"):
        config.from_dict({"dataset": {"modality": "image", "source": "srn", "path": "/data/srn"}})
    with pytest.raises(config.ConfigError, match=r"^dataset.source: amass is not a source of dataset.modality image"):
        config.from_dict({"dataset": {"modality": "image", "source": "amass", "path": "/data/amass"}})


def literal_names(node) -> set[str]:
    """Modality names a comparison's operand spells out (a string, or a tuple/list/set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & set(SPECS)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(literal_names(e) for e in node.elts)) if node.elts else set()
    return set()


def test_no_stage_tool_or_config_check_branches_on_a_modality_name():
    found = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if "modalities" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = set().union(*(literal_names(x) for x in [node.left, *node.comparators]))
                if names:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} compares with {sorted(names)}")
    assert not found, "\n".join(found)
