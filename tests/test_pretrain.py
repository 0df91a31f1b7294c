"""Packed pretraining equals per-document training."""

import torch

from aha.stages.pretrain import pack_documents


def test_packing_keeps_every_document_whole_and_isolated(tiny_model_dir):
    from aha.models.loading import load_model_dir

    model, _ = load_model_dir(tiny_model_dir)
    model.eval()
    docs = [[(k * 37 + i) % 250 + 1 for i in range(n)] for k, n in enumerate((30, 7, 90, 12, 55, 3))]
    ids, mask, positions, targets = pack_documents(docs, pad_id=0, row_tokens=100)
    assert ids.shape[1] == 100 and len(ids) < len(docs)  # several documents share rows
    with torch.no_grad():
        packed = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        for doc in docs:  # find each document in the packed rows; its logits equal a lone forward
            alone = model(input_ids=torch.tensor([doc])).logits[0]
            hits = [(r, s) for r in range(len(ids)) for s in range(100 - len(doc) + 1)
                    if ids[r, s : s + len(doc)].tolist() == doc and positions[r, s] == 0]
            r, s = hits[0]
            assert torch.allclose(packed[r, s : s + len(doc)], alone, atol=1e-4)
            assert targets[r, s : s + len(doc) - 1].tolist() == doc[1:] and targets[r, s + len(doc) - 1] == -100
    assert (targets != -100).sum() == sum(len(d) - 1 for d in docs)
