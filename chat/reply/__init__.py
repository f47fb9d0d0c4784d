"""One turn: the pipeline that runs it, the prompt window, notes (summaries, profiles), personas,
and conversations as files."""
