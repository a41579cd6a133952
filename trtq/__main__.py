from trtq.cli import main

raise SystemExit(main())
