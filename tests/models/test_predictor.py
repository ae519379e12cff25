import torch

from action100m.models.config import PredictorConfig
from action100m.models.predictor import Predictor


def predictor():
    torch.manual_seed(0)
    return Predictor(PredictorConfig(), vision_width=32, embed_dim=16).eval()


def test_the_causal_mask_is_off():
    """Changing only the last query token changes the output at every earlier position."""
    model = predictor()
    vision = torch.randn(1, 5, 32)
    ids, mask = model.tokenize(["what is the action?"], vision.device)
    changed = ids.clone()
    changed[0, -1] = changed[0, -1] + 7
    with torch.no_grad():
        out, _ = model.hidden_states(vision, ids, mask)
        out_changed, _ = model.hidden_states(vision, changed, mask)
    earlier = out.shape[1] - 1
    differs = (out[0, :earlier] - out_changed[0, :earlier]).abs().amax(dim=-1) > 1e-6
    assert differs.all(), f"positions unaffected by a later token: {(~differs).nonzero().flatten().tolist()}"


def test_pad_positions_neither_attend_nor_pool():
    """A query padded in a batch with a longer one gives the embedding it gives alone."""
    model = predictor()
    vision = torch.randn(2, 5, 32)
    queries = ["what?", "what is the action being done here?"]
    ids, mask = model.tokenize(queries, vision.device)
    assert mask[0].sum() < mask.shape[1]  # the first query is padded
    with torch.no_grad():
        batched = model(vision, ids, mask)
        alone_ids, alone_mask = model.tokenize(queries[:1], vision.device)
        alone = model(vision[:1], alone_ids, alone_mask)
    assert torch.allclose(batched[0], alone[0], atol=1e-5)
