"""The Ray glue: starting or joining Ray with its dashboard (``session``), running a training job as Ray Train
workers (``train``), and the two changes to Ray Tune's behaviour the search relies on (``tune_patches``)."""
