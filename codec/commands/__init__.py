"""The bodies of the `fvc` commands, one module each (`run(args)`); codec/cli.py parses the arguments and
dispatches here. common.py holds what several commands share."""
