"""commands floor of LLMOS: the verb table the `llmos` CLI and the %llmos magic share.

    table.py           every verb's arguments (argparse), parsed the same in both
    dispatch.py        a parsed verb -> its handler
    models.py, data.py, tasks.py, train.py, run_model.py, serve.py   the handlers
    output.py          what a handler returns: Table, Record or Message, shown as text,
                       JSON or HTML

Imports: `llmos_jupyter.api` and the bottom floor (`errors`, `humanize`), never the
runtime or the store directly. The parser imports no handler module but train.py (for
the train verb's options), which imports the api only when a handler runs: parsing, and
`llmos --help`, stay light.
"""
