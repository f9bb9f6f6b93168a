"""Edge export: the encoder and the velocity network as ONNX (:mod:`flowfm.export.onnx_export`) and a few-step
sampler that runs them under ONNX Runtime with numpy only (:mod:`flowfm.export.runner`)."""
