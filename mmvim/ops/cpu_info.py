"""What /proc/cpuinfo says about this CPU (Linux): the instruction sets the
compiled backend checks before loading, and the model name the benchmarks
print beside their figures. Reads the file only: nothing is loaded."""
from typing import Optional, Tuple


def cpuinfo_field(keys: Tuple[str, ...],
                  path: str = '/proc/cpuinfo') -> Optional[str]:
    """The value of the first line of ``path`` whose name is one of ``keys``
    (x86 and Arm name some fields differently), None where the file or the
    field is missing."""
    try:
        with open(path) as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(':')
                if name.strip() in keys:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> Optional[set]:
    """The instruction-set flags of this CPU, None where unknown."""
    flags = cpuinfo_field(('flags', 'Features'))
    return None if flags is None else set(flags.split())


def cpu_model_name() -> Optional[str]:
    """This CPU's model name, None where unknown."""
    return cpuinfo_field(('model name', ))
