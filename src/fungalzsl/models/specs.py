"""The model-spec strings users type (torch-free, so every command's ``--help`` can show them)."""

SPEC_HELP = "lite, openclip:ARCH@TAG (e.g. openclip:ViT-B-32@openai), openclip:hf-hub:ID, or hf:ID_OR_DIR"
