from podlog.cli import main

raise SystemExit(main())
