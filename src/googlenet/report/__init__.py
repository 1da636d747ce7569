"""Reports: one self-contained HTML page per run folder (`googlenet report`)."""
