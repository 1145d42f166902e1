# The edge_lite run's own finish step (temperature, threshold, metrics, spec, ONNX): the training process
# stopped at its time budget after epoch 14 but crashed in finish() on code merged mid-run.
from edge_ls.export.onnx_export import export_onnx
from edge_ls.training.config import load_config
from edge_ls.training.trainer import Trainer

cfg = load_config("training/configs/edge_lite.toml")
t = Trainer(cfg, "runs/edge_lite", resume=True, progress=print, config_source="training/configs/edge_lite.toml",
            exporter=export_onnx)
t._setup()
print(t.best, t.best_epoch)
summary = t.finish("time budget")
