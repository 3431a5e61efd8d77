"""The stage runtime: the guarded consume loop and stage context, Faust's overrides, checkpoints (no stage logic)."""
