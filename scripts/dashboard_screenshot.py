"""Screenshot the dashboard into docs/dashboard.png.

    .venv/bin/python scripts/dashboard_screenshot.py                      # an example history, built first
    .venv/bin/python scripts/dashboard_screenshot.py --data runs/demo     # a recorded run (a copy is served)

Needs Playwright and a Chromium (make setup installs both).
"""

from __future__ import annotations

import argparse

from lifelong.service.dashboard.browser import render_screenshot, why_no_browser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/dashboard.png", help="where to write the PNG")
    parser.add_argument("--data", default=None, help="a service folder or recorded run (ledger.db, memory.db)")
    parser.add_argument("--tenant", default=None, help="whose history to show (default: the busiest tenant)")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=960)
    args = parser.parse_args()
    problem = why_no_browser()
    if problem:
        raise SystemExit(problem)
    path = render_screenshot(args.out, args.data, args.tenant, width=args.width, height=args.height)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
