"""Run folders and the files in them: where each file lives (``layout``), a supernet's record read without torch
(``record``), atomic checkpoints (``checkpoint``), CSV files (``files``) and the upgrade of old formats
(``migrate``)."""
