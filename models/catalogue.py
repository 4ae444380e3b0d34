"""Every model the project ships: registry name -> "module:Class". Imported lazily by the registry."""

MODELS = {
    "closed_form": "models.classical.closed_form:ClosedForm",
    "knn": "models.classical.knn:KNN",
    "closed_form_pymatting": "models.classical.reference:ClosedFormPymatting",
    "knn_pymatting": "models.classical.reference:KNNPymatting",
    "difference": "models.classical.difference:Difference",
    "null": "models.null:Null",
    "dcnn": "models.dcnn.model:DCNN",
    "msia": "models.msia.model:MSIA",
    "bgm": "models.bgm.model:BGM",
    "bgm_excite": "models.bgm.model:BGMExcite",
    "lightweight": "models.lightweight.model:Lightweight",
    "lightweight_octave": "models.lightweight.model:LightweightOctave",
}
