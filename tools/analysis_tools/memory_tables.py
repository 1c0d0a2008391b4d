#!/usr/bin/env python
"""The memory tables of docs/memory.md and the README: every shipped
config's estimated peak per GPU (tools/analysis_tools/estimate_memory.py)
in fp32 and amp, with_cp off and on, at the recipe's batch per GPU and at
1, 2, 4, and the smallest card that holds it. The estimates run one after
the other in this process; --from redraws the tables from a results file."""
import argparse
import json
import sys
from pathlib import Path

from mmvim.analysis.memory_table import (docs_tables, readme_table,
                                         replace_between_markers, run_grid,
                                         shipped_configs)

DOCUMENTS = (('docs/memory.md', 'memory-table', docs_tables),
             ('README.md', 'memory-table', readme_table))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--results',
                        help='estimate, and write the results here (JSON)')
    source.add_argument('--from', dest='source',
                        help='a results file written by --results')
    parser.add_argument('--configs', nargs='+',
                        help='only these configs (default: all shipped)')
    parser.add_argument('--write-docs', action='store_true',
                        help='put the tables into docs/memory.md and the '
                        'README (between their memory-table markers)')
    args = parser.parse_args(argv)
    if args.results and Path(args.results).exists():
        parser.error(f'{args.results} exists: give a new file')
    if args.source and args.configs:
        parser.error('--configs chooses what to estimate; not with --from')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.source:
        rows = json.loads(Path(args.source).read_text())
    else:
        rows = run_grid(args.configs or shipped_configs(),
                        progress=lambda line: print(line, file=sys.stderr))
        Path(args.results).write_text(json.dumps(rows, indent=1) + '\n')
    for path, marker, render in DOCUMENTS:
        table = render(rows)
        print(table)
        if args.write_docs:
            document = Path(path)
            document.write_text(replace_between_markers(
                document.read_text(), marker, table))
    return rows


if __name__ == '__main__':
    main()
