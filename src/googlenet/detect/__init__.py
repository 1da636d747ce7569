"""Detection as in section 8 (so far: VOC/ILSVRC average precision and `googlenet detect evaluate`)."""
