"""Review tools over a candidates manifest (`quarry review`), seed 000's scripts as subcommands."""
