"""The model: SSPAConfig, SSPAForImageClassification, its image processor, pipeline, weights, ONNX export.

configuration_sspa, modeling_sspa, pipeline_sspa and pixels are copied into every saved model folder
(`auto_map`), so they import only each other, relatively.
"""
