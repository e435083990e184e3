"""The after-run commands (`beam-seg report`, `events`, `eval`): they read a finished output
root's tables and files, never run a model, and never import Beam."""
