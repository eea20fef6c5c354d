"""Register our criteria under names fairseq may already use.

fairseq >= 0.12.3 (and the fairseq-fixed fork) ships its own
``label_smoothed_cross_entropy_with_rdrop``; its ``register_criterion`` refuses
a second registration ("Cannot register duplicate criterion"). We remove the
built-in from the criterion and dataclass registries first; hydra's
ConfigStore simply overwrites the node of the same name, so YAML written for
the built-in resolves to our config (a superset of its fields).

With ``RDROP_FAIRSEQ_NO_REPLACE_BUILTIN=1`` the built-in keeps its name and ours
is registered as ``rdrop_fairseq_<name>`` instead, so both can be used in one
installation (a free name, as on fairseq 0.12.2, is simply taken).

``REGISTERED`` records, per name asked for, the name ours got and the class it displaced, for
the plugin's one INFO line; the details are logged at DEBUG.
"""
import logging

from fairseq.criterions import CRITERION_DATACLASS_REGISTRY, CRITERION_REGISTRY, register_criterion

from ..switches import NO_REPLACE_BUILTIN, switched_off

logger = logging.getLogger(__name__)

ALTERNATIVE_PREFIX = "rdrop_fairseq_"
REGISTERED = {}  # name asked for -> (name registered, "module.Class" of the built-in of that name, or None)


def _path(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def register_criterion_replacing(name, dataclass):
    """Like fairseq's ``register_criterion``, but replaces an existing entry of that name
    (or, with the switch set, registers under ``ALTERNATIVE_PREFIX + name``)."""

    def wrap(cls):
        existing = CRITERION_REGISTRY.get(name)
        if existing is None:
            REGISTERED.setdefault(name, (name, None))
            return register_criterion(name, dataclass=dataclass)(cls)
        if _path(existing) == _path(cls):
            pass  # ours again (a module reloaded): replace silently
        elif switched_off(NO_REPLACE_BUILTIN):
            alternative = ALTERNATIVE_PREFIX + name
            logger.debug("rdrop_fairseq: %s set: criterion '%s' stays %s; ours (%s) is '%s'",
                         NO_REPLACE_BUILTIN, name, _path(existing), _path(cls), alternative)
            REGISTERED[name] = (alternative, _path(existing))
            CRITERION_REGISTRY.pop(alternative, None)
            CRITERION_DATACLASS_REGISTRY.pop(alternative, None)
            return register_criterion(alternative, dataclass=dataclass)(cls)
        else:
            logger.debug("rdrop_fairseq: criterion '%s' now uses %s (replacing %s; %s=1 keeps it and registers "
                         "ours as '%s')", name, _path(cls), _path(existing), NO_REPLACE_BUILTIN,
                         ALTERNATIVE_PREFIX + name)
            REGISTERED[name] = (name, _path(existing))
        del CRITERION_REGISTRY[name]
        CRITERION_DATACLASS_REGISTRY.pop(name, None)
        return register_criterion(name, dataclass=dataclass)(cls)

    return wrap
