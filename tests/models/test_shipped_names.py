"""Shipped models are loadable by name."""

def test_load_model_takes_a_shipped_models_name():
    """``load_model("tiny-dream")`` opens the shipped folder (not the Hub), with its stored decode settings."""
    import fastdllm

    model = fastdllm.load_model("tiny-dream", device="cpu")
    assert model.name == "dream" and model.decode_defaults == {"gen_length": 64, "block_length": 8}
