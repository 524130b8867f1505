from __future__ import annotations

from placer.cli import main

raise SystemExit(main())
