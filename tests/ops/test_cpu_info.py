import subprocess
import sys

from mmvim.ops.cpu_info import cpuinfo_field

X86 = '''processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu sse2 avx2 fma
'''
ARM = '''processor\t: 0
Features\t: fp asimd sve
CPU implementer\t: 0x41
'''


def test_fields_are_read_by_name_on_x86_and_arm(tmp_path):
    x86, arm = tmp_path / 'x86', tmp_path / 'arm'
    x86.write_text(X86)
    arm.write_text(ARM)
    flags = ('flags', 'Features')
    assert cpuinfo_field(flags, str(x86)) == 'fpu sse2 avx2 fma'
    assert cpuinfo_field(flags, str(arm)) == 'fp asimd sve'
    assert cpuinfo_field(('model name', ),
                         str(x86)) == 'AMD EPYC 7763 64-Core Processor'
    assert cpuinfo_field(('model name', ), str(arm)) is None
    assert cpuinfo_field(flags, str(tmp_path / 'missing')) is None


def test_reading_the_cpu_loads_no_backend():
    """The build-target tests ask what this CPU runs without the native
    library, which may be missing or built for another machine."""
    loaded = subprocess.run(
        [sys.executable, '-c', 'import sys, mmvim.ops.cpu_info as c; '
         'c.cpu_flags(); print(sorted(m for m in sys.modules '
         'if m.startswith("mmvim.ops.backends")))'],
        capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == '[]'
