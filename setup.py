"""mmvim's install: the Python package and, where it can be built, the
compiled CPU operators of the `cpu` ops backend (mmvim/ops/_cpu_ops*.so, a
library of torch operators with no Python bindings).

The library is compiled against the installed torch's stable ABI (so install
with --no-build-isolation; it keeps loading after torch upgrades) for the
installing machine's instruction set (-march=native;
MMVIM_CPU_MARCH=x86-64-v3, say, for a build that runs on other machines).
MMVIM_CPU_LANES=16 (or 8, 4) imposes the kernels' vector width, for testing
another machine's code here (the 16 lanes of AVX-512 on an AVX2 CPU).
MMVIM_WITH_CPU_OPS=0 skips it, =1 makes a failed build an error; unset, a
failed build warns and mmvim runs on its portable ops.
"""
import os
import platform
from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name):
    lines = Path('requirements', name).read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines
            if ln.split('#')[0].strip()]


# The LibTorch stable ABI version the CPU operators are built against: the
# library then loads into this torch and every later one.
STABLE_ABI_TARGET = (2, 10)
CPU_OPS = 'mmvim.ops._cpu_ops'


def compiled_isa(compiler, flag):
    """The instruction-set extensions ``compiler flag`` compiles for, from its
    predefined macros: the loader refuses the library on a CPU without them
    (the library's own code, static initialisers included, may use them)."""
    macros = {'__AVX512F__': 'avx512f', '__AVX2__': 'avx2', '__FMA__': 'fma',
              '__ARM_NEON': 'neon'}
    import subprocess
    defined = subprocess.run(
        [compiler, flag, '-dM', '-E', '-x', 'c++', os.devnull],
        capture_output=True, text=True, check=True).stdout.split()
    return sorted(isa for macro, isa in macros.items() if macro in defined)


def write_build_record(library, isa, lanes):
    """``<library>.json`` beside the built library: its SHA-256, the
    instruction sets it needs and an imposed vector width (or None).
    mmvim.ops.backends.cpu checks the first two before it loads the file,
    so that a damaged or foreign build is reported instead of crashing the
    process (SIGBUS, SIGILL)."""
    import hashlib
    import json
    import torch
    digest = hashlib.sha256(Path(library).read_bytes()).hexdigest()
    record = dict(library=Path(library).name, sha256=digest, isa=isa,
                  lanes=lanes,
                  built_with_torch=torch.__version__,
                  stable_abi_target='.'.join(map(str, STABLE_ABI_TARGET)))
    Path(f'{library}.json').write_text(json.dumps(record, indent=1) + '\n')


def cpu_ops_build():
    """(ext_modules, cmdclass) for the compiled CPU operators, or empty
    ones."""
    choice = os.environ.get('MMVIM_WITH_CPU_OPS', '').strip()
    if choice == '0':
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        if choice == '1':
            raise
        print('mmvim: torch is not importable while building, so the '
              'compiled CPU ops are skipped (install torch first, then mmvim '
              'with --no-build-isolation).')
        return [], {}

    arm = platform.machine().lower() in ('aarch64', 'arm64')
    march = ('-mcpu=' if arm else '-march=') + os.environ.get(
        'MMVIM_CPU_MARCH', 'native')
    lanes = os.environ.get('MMVIM_CPU_LANES', '').strip() or None
    if lanes not in (None, '4', '8', '16'):
        raise SystemExit(f'MMVIM_CPU_LANES={lanes}: use 4, 8 or 16, or unset '
                         'it for the instruction set\'s own width')

    class OptionalBuildExtension(BuildExtension):
        """A failed compile warns instead of failing the install, unless
        MMVIM_WITH_CPU_OPS=1; a successful one writes its build record."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
                write_build_record(self.get_ext_fullpath(ext.name),
                                   compiled_isa(self.compiler.compiler_so[0],
                                                march),
                                   lanes and int(lanes))
            except Exception as error:  # noqa: BLE001 - compiler errors vary
                if choice == '1':
                    raise
                print(f'mmvim: WARNING: the compiled CPU ops failed to build '
                      f'({error}); mmvim will run on its portable ops. '
                      'Set MMVIM_WITH_CPU_OPS=1 to see the failure as an '
                      'error.')

        def copy_extensions_to_source(self):
            """In-place and editable builds: the record goes with the
            library."""
            super().copy_extensions_to_source()
            build_py = self.get_finalized_command('build_py')
            for ext in self.extensions:
                in_place, built = self._get_inplace_equivalent(build_py, ext)
                if os.path.exists(f'{built}.json'):
                    self.copy_file(f'{built}.json', f'{in_place}.json',
                                   level=self.verbose)

    major, minor = STABLE_ABI_TARGET
    extension = CppExtension(
        CPU_OPS, sorted(
            str(path) for path in Path('mmvim/ops/csrc').glob('*.cpp')),
        depends=sorted(
            str(path) for path in Path('mmvim/ops/csrc').glob('*.h')),
        extra_compile_args=[
            '-O3', march, '-fno-math-errno', '-fno-trapping-math',
            '-ffp-contract=fast',
            # Vectors wider than the target's registers (the row path's 16
            # floats without AVX-512, MMVIM_LANES' wide lanes) pass in memory
            # between helpers that are all inlined in one file: -Wpsabi's
            # note on the ABI of such calls concerns no caller outside it.
            '-Wno-psabi',
            *([f'-DMMVIM_LANES={lanes}'] if lanes else []),
            f'-DTORCH_TARGET_VERSION=0x{major:02x}{minor:02x}000000000000'
        ],
        py_limited_api=True)
    return [extension], {'build_ext': OptionalBuildExtension}


version = {}
exec(Path('mmvim/version.py').read_text(), version)
ext_modules, cmdclass = cpu_ops_build()

setup(
    name='mmvim',
    version=version['__version__'],
    description='Vision Mamba (Vim) backbones for MMSegmentation and '
    'MMDetection',
    long_description=Path('README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmvim', 'mmvim.*']),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'cuda': read_requirements('cuda.txt'),
        'tests': read_requirements('tests.txt'),
        'mm': read_requirements('mminstall.txt'),
        'deploy': read_requirements('deploy.txt'),
        'triton': read_requirements('triton.txt'),
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    license='Apache License 2.0',
)
