"""The lab UI (Textual). Imports no torch and no engine internals: the engine is a subprocess.

Start it with `silab.tui.app.run_app(...)`; the CLI does this for `silab`, `--resume` and `view`.
"""
