from nitroproxy.cli import main

raise SystemExit(main())
