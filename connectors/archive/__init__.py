"""The account archive: a documented directory or zip that is both a sink and a source.

    layout   the paths, names and format version (the format itself is described there)
    reader   ArchiveReader: streams the files of a directory or zip
    source   ArchiveSource: replays an archive as if it were the live service
    sink     ArchiveSink: writes a full account snapshot (the ``archive://`` destination)
    verify   verify(): re-hashes every file and checks the counts against the manifest
"""
