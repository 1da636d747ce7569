"""Detection as in section 8: proposals (selective search, the paper's settings, MultiBox), the R-CNN
region classifier's training and prediction, box regression (beyond the paper), and VOC/ILSVRC average
precision; `googlenet detect ...` runs each (docs/detection.md)."""
