"""Register our criterion under a name fairseq may already use.

fairseq >= 0.12.3 (and the fairseq-fixed fork) ships its own
``label_smoothed_cross_entropy_with_rdrop``; its ``register_criterion`` refuses
a second registration ("Cannot register duplicate criterion"). We remove the
built-in from the criterion and dataclass registries first; hydra's
ConfigStore simply overwrites the node of the same name, so YAML written for
the built-in resolves to our config (a superset of its fields).

With ``RDROP_FAIRSEQ_NO_REPLACE_BUILTIN=1`` the built-in keeps its name and ours
is registered as ``rdrop_fairseq_<name>`` instead, so both can be used in one
installation (a free name, as on fairseq 0.12.2, is simply taken).
"""
import logging

from .switches import NO_REPLACE_BUILTIN, switched_off

logger = logging.getLogger(__name__)

ALTERNATIVE_PREFIX = "rdrop_fairseq_"


def register_criterion_replacing(name, dataclass):
    """Like fairseq's ``register_criterion``, but replaces an existing entry of that name
    (or, with the switch set, registers under ``ALTERNATIVE_PREFIX + name``)."""
    from fairseq.criterions import (
        CRITERION_DATACLASS_REGISTRY,
        CRITERION_REGISTRY,
        register_criterion,
    )

    def wrap(cls):
        existing = CRITERION_REGISTRY.get(name)
        if existing is None:
            return register_criterion(name, dataclass=dataclass)(cls)
        if existing.__qualname__ == cls.__qualname__ and existing.__module__ == cls.__module__:
            pass  # ours again (a module reloaded): replace silently
        elif switched_off(NO_REPLACE_BUILTIN):
            alternative = ALTERNATIVE_PREFIX + name
            logger.info(
                "rdrop_fairseq: %s set: criterion '%s' stays %s.%s; ours (%s.%s) is '%s'",
                NO_REPLACE_BUILTIN, name, existing.__module__, existing.__qualname__,
                cls.__module__, cls.__qualname__, alternative,
            )
            CRITERION_REGISTRY.pop(alternative, None)
            CRITERION_DATACLASS_REGISTRY.pop(alternative, None)
            return register_criterion(alternative, dataclass=dataclass)(cls)
        else:
            logger.info(
                "rdrop_fairseq: criterion '%s' now uses %s.%s (replacing %s.%s; "
                "%s=1 keeps it and registers ours as '%s')",
                name, cls.__module__, cls.__qualname__, existing.__module__, existing.__qualname__,
                NO_REPLACE_BUILTIN, ALTERNATIVE_PREFIX + name,
            )
        del CRITERION_REGISTRY[name]
        CRITERION_DATACLASS_REGISTRY.pop(name, None)
        return register_criterion(name, dataclass=dataclass)(cls)

    return wrap
