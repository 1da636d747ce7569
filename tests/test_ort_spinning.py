"""benchmarks/ort_spinning.py: the three sessions (our backend's, `onnxruntime_session`) differ only in
their spinning setting."""

import torch

import googlenet
from extras import require
from googlenet.infer.fused import fuse
from googlenet.infer.optimize import export_onnx, onnxruntime_session

require("onnxruntime")


def test_each_setting_reaches_its_session_and_none_changes_the_logits(load_script):
    script = load_script("ort_spinning")
    torch.manual_seed(0)
    model = googlenet.build_model("torchvision", num_classes=10, aux_logits=False).eval()
    onnx = export_onnx(fuse(model), 64)
    x = torch.randn(2, 3, 64, 64)
    outputs = []
    for entries in script.SETTINGS.values():
        sess = onnxruntime_session(onnx, torch.device("cpu"), entries)
        options = sess.get_session_options()
        for key, value in entries.items():
            assert options.get_session_config_entry(key) == value
        outputs.append(script.logits_of(sess)(x))
    assert all(torch.equal(outputs[0], other) for other in outputs[1:])
    with torch.no_grad():
        torch.testing.assert_close(outputs[0], model(x), rtol=1e-4, atol=1e-4)
