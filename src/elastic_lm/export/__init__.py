"""Chosen sub-networks become standalone Hugging Face models (and, optionally, ONNX graphs).

```python
from elastic_lm.export import export_subnetwork, load_supernet
supernet = load_supernet("runs/elm-mlm/train/supernet")
done = export_subnetwork(supernet.model, arch, "out/small", onnx=True)
```

Uniform BERT / RoBERTa / GPT-2 / Llama sub-networks are saved as the stock transformers class (no
elastic-lm needed to load them); every other shape as elastic-lm's own class (``import elastic_lm.model``
registers it with the Auto classes); such a folder also carries that class's code with ``auto_map``, so
``from_pretrained(dir, trust_remote_code=True)`` loads it without elastic-lm. See ``docs/export.md``.
"""

from __future__ import annotations

from elastic_lm.export.onnx import ExportVerificationError, OnnxExport, export_onnx
from elastic_lm.export.pareto import SUPERNET_SUBDIR, export_pareto
from elastic_lm.export.stock import StockFit, stock_fit, to_stock
from elastic_lm.export.subnet import ExportedModel, export_subnetwork, verify_export
from elastic_lm.export.supernet import Supernet, check_in_space, load_supernet, save_supernet

__all__ = [
    "SUPERNET_SUBDIR",
    "ExportVerificationError",
    "ExportedModel",
    "OnnxExport",
    "StockFit",
    "Supernet",
    "check_in_space",
    "export_onnx",
    "export_pareto",
    "export_subnetwork",
    "load_supernet",
    "save_supernet",
    "stock_fit",
    "to_stock",
    "verify_export",
]
