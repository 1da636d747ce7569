"""Ablation studies: which of the paper's ingredients matter, measured over seeds (`googlenet ablate`)."""
