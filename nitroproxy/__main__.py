import multiprocessing

from nitroproxy.cli.main import main

# `serve --workers N` spawns its workers by running this executable again; in the one-file
# build (`make dist`) that is the frozen binary, which must hand such a run to the worker.
multiprocessing.freeze_support()
raise SystemExit(main())
