"""Prompt-adherence judges behind one interface (`base.Judge`): an open-vocabulary detector with GenEval's rules,
CLIP caption contrast, and the calibration world's exact shapes detector. Build one with `registry.build_judge`."""
