"""``--cfg-options`` keys checked against the classes they configure.

mmengine merges any key into the config; a typo (``train_cfg.max_iter=2``)
then surfaces as ``unexpected keyword argument`` from deep inside the Runner,
after the model is built, or not at all. Before anything is built,
:func:`check_cfg_options` looks up the class of the config section a new key
goes into (its ``type``, in the config's library and mmengine) and refuses a
key that class does not take, naming the close ones.
"""
import difflib
import importlib
import inspect
from typing import Iterable, Optional, Set

from mmengine.registry import Registry

from .run_guards import RunSetupError

# Keys the builders read themselves besides the class's arguments.
BUILDER_KEYS = {'type', '_scope_', 'priority', 'constructor', 'paramwise_cfg'}


def _registries(scope: Optional[str]) -> Iterable[Registry]:
    modules = ['mmengine.registry']
    if scope and scope != 'mmengine':
        modules.insert(0, f'{scope}.registry')
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        yield from (value for value in vars(module).values()
                    if isinstance(value, Registry))


def _class_of(section: dict, scope: Optional[str]):
    kind = section.get('type')
    if not isinstance(kind, str):
        return kind if callable(kind) else None
    for registry in _registries(section.get('_scope_') or scope):
        found = registry.get(kind)
        if found is not None:
            return found
    return None


def accepted_arguments(target) -> Optional[Set[str]]:
    """The keyword arguments ``target`` (a class or function) takes,
    following ``**kwargs`` up the class hierarchy; None when they cannot be
    known (``**kwargs`` that reach no signature without them)."""
    names: Set[str] = set()
    functions = [klass.__dict__['__init__'] for klass in inspect.getmro(target)
                 if '__init__' in klass.__dict__ and klass is not object
                 ] if inspect.isclass(target) else [target]
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {parameter.name for parameter in parameters
                  if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD,
                                        parameter.KEYWORD_ONLY)}
        if not any(parameter.kind == parameter.VAR_KEYWORD
                   for parameter in parameters):
            return names - {'self'}
    # **kwargs all the way to object: object takes none.
    return names - {'self'} if inspect.isclass(target) else None


def _section(tree: dict, path):
    node = tree
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and \
                int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def check_cfg_options(cfg, options: dict) -> None:
    """Raises RunSetupError for each key of ``options`` that is new to the
    config section it goes into when that section's class does not take it.
    Keys already in the config, and sections whose class or arguments
    cannot be known, are left alone."""
    problems = []
    scope = cfg.get('default_scope')
    tree = cfg.to_dict()
    for key in options:
        *path, leaf = key.split('.')
        section = _section(tree, path)
        if not isinstance(section, dict) or leaf in section or \
                leaf in BUILDER_KEYS or not path:
            continue
        target = _class_of(section, scope)
        accepted = accepted_arguments(target) if target else None
        if accepted is None or leaf in accepted:
            continue
        close = difflib.get_close_matches(leaf, sorted(accepted), n=3,
                                            cutoff=0.75)
        hint = (f'did you mean {" or ".join(close)}?' if close else
                f'it takes {", ".join(sorted(accepted))}')
        problems.append(f'--cfg-options {key}: {target.__name__} takes no '
                        f'{leaf!r} ({hint})')
    if problems:
        raise RunSetupError('\n'.join(problems))
