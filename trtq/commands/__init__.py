"""One module per `trtq` subcommand: `run(args)` turns parsed arguments into library calls."""
