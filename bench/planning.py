"""Every published memory figure beside the estimate, with its source and the ratio (helpers/calibration.py).

Band: never below the published need, at most +35% (an envelope "24-40 GB": low .. 1.35 x high); a
configuration published as running on a GPU fits it.
"""

from __future__ import annotations

from bench.common import table, write_section
from helpers.calibration import CASES


def main() -> None:
    rows, inside_all = [], True
    for case in CASES:
        total, inside = case.check()
        inside_all &= inside
        ratio = total / case.high_gb if case.runs_on_gb is None else total / case.runs_on_gb
        rows.append([case.label, case.published(), f"{total:.1f}",
                     f"{ratio:.2f}x {'of the top' if case.low_gb != case.high_gb else 'of it'}" if case.runs_on_gb is None
                     else f"{ratio:.2f} of the GPU", "yes" if inside else "NO", case.source])
    body = table(["case", "published", "estimate GB", "ratio", "in band", "source"], rows)
    body += f"\n\n{sum(c.check()[1] for c in CASES)} of {len(CASES)} inside the band" + ("" if inside_all else " (NOT ALL)")
    write_section("planning", "python -m bench planning", body)
    print(body)


if __name__ == "__main__":
    main()
