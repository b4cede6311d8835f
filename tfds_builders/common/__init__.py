"""What the builders share: reading, repairing and assembling recordings.

The real-data builders (`assembly101_sync`, `egoexo4d_keystep`,
`feature_folder`) only say where the pieces of each recording are; these
modules do the rest:

  errors        DataError / MissingData (one `error:` line), `require`
  repair        RepairPolicy, `repair.json` in the manual dir, RepairLog
  annotations   class tables, segment and per-frame label files
  splits        split lists, hash partitions, disjoint held-out splits
  features      .npy/.pt feature files and per-frame LMDBs
  alignment     one recording's streams cut to one frame axis, repaired
  sync_builder  SyncConfig, Plan and SyncFeatureBuilder (one example per
                recording, every repair in `info.metadata["repairs"]`)
  build_hooks   byte-identical files and KeepPreviousBuild (--overwrite),
                used by every builder, the synthetic one too

Imported as `tfds_builders.common` both by `tfds build tfds_builders/<name>`
and by the package (the project must be importable: installed, or its root
on PYTHONPATH), so each module is loaded once.
"""
