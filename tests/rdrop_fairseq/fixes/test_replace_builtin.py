"""Registration: replacing an existing criterion, registering a free name."""
import logging
from dataclasses import dataclass

from fairseq.criterions import CRITERION_DATACLASS_REGISTRY, CRITERION_REGISTRY, FairseqCriterion
from fairseq.dataclass import FairseqDataclass

from rdrop_fairseq.fixes.replace_builtin import REGISTERED, register_criterion_replacing


@dataclass
class _Cfg(FairseqDataclass):
    pass


def test_free_name_registers_normally_without_a_log(caplog):
    """What happens on fairseq 0.12.2, which has no built-in R-Drop criterion."""
    name = "rdrop_test_free_name"
    with caplog.at_level(logging.DEBUG):
        @register_criterion_replacing(name, dataclass=_Cfg)
        class FreeNameCriterion(FairseqCriterion):
            pass
    try:
        assert CRITERION_REGISTRY[name] is FreeNameCriterion
        assert CRITERION_DATACLASS_REGISTRY[name] is _Cfg
        assert "replacing" not in caplog.text
    finally:
        CRITERION_REGISTRY.pop(name)
        CRITERION_DATACLASS_REGISTRY.pop(name)
        REGISTERED.pop(name)


def test_taken_name_is_replaced_and_logged(caplog):
    name = "rdrop_test_taken_name"

    @register_criterion_replacing(name, dataclass=_Cfg)
    class First(FairseqCriterion):
        pass

    with caplog.at_level(logging.DEBUG):
        @register_criterion_replacing(name, dataclass=_Cfg)
        class Second(FairseqCriterion):
            pass
    try:
        assert CRITERION_REGISTRY[name] is Second
        assert caplog.text.count("replacing") == 1 and "First" in caplog.text  # at DEBUG
    finally:
        CRITERION_REGISTRY.pop(name)
        CRITERION_DATACLASS_REGISTRY.pop(name)
        REGISTERED.pop(name)
