"""The per-frame tables a run writes (coverage, regions and objects, events): their pyarrow
schemas and the pure functions that fill them. The pipeline's write and finish steps make
them; the after-run commands read them."""
