"""data floor of LLMOS: users' records read, described, prepared and tokenized.

    datareaders.py   every supported file format streamed as records (jsonl, json,
                     csv/tsv, txt, parquet), a DataError naming the line or row at fault
    datafiles.py     canonical JSONL snapshots (sha256 = a dataset version) and exports
    dataprep.py      columns, statistics, cleaning and splitting, in memory
    shards.py        token shards: tokenized documents in one memory-mappable file

Files and lists in, files and lists out: the catalog rows that name them are the
store's (store/datasets.py). Imports: only `llmos_jupyter.errors` of ours; pandas,
pyarrow and numpy where a format or a shard needs them.
"""
