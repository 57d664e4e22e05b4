from nitroproxy.cli.main import main

raise SystemExit(main())
