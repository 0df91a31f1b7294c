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


def _is_division(document: str) -> bool:
    return " divided by " in document or " 除以 " in document


def test_general_documents_are_added_beside_the_same_reasoning_traces():
    from aha.stages.pretrain import build_corpus
    from aha.tasks import get_task
    from aha.tasks.general import GeneralBilingualTask

    task = get_task("division_bilingual")
    before = build_corpus(task, 300, seed=3)
    after = build_corpus(task, 375, seed=3, general_share=0.2)
    general = [d for d in after if not _is_division(d)]
    assert len(general) == 75  # round(375 × 0.2)
    # The reasoning traces are the ones a corpus without general text holds (only the order moves).
    assert sorted(d for d in after if _is_division(d)) == sorted(before)
    # Every general document answers a train-split request: the held-out ones stay unseen.
    held_out = {p.question for p in GeneralBilingualTask().problems("test", 2000, seed=0)}
    asked = {d.split("User: ")[1].split(". Assistant:")[0] for d in general}
    assert asked and not asked & held_out
    assert all("</think> <answer>" in d and d.endswith("</answer>") for d in general)


def test_a_base_without_general_text_keeps_its_name_and_one_with_it_gets_its_own():
    from aha.config import PretrainConfig, TaskConfig
    from aha.models.loading import embedded_base_dir, shipped_base_dir

    task = TaskConfig(name="division_bilingual")
    assert shipped_base_dir(PretrainConfig(), TaskConfig()) is not None  # the default base is still found
    plain, general = PretrainConfig(documents=100), PretrainConfig(documents=100, general_share=0.2)
    assert embedded_base_dir(plain, task) != embedded_base_dir(general, task)


def test_shares_of_one_corpus_cannot_exceed_it():
    import pytest

    from aha.config import ConfigError, PretrainConfig

    with pytest.raises(ConfigError, match="facts_share .* general_share"):
        PretrainConfig(facts_share=0.6, general_share=0.5).validate("pretrain")
    with pytest.raises(ConfigError, match="general_share"):
        PretrainConfig(general_share=1.5).validate("pretrain")


def test_the_bilingual_recipes_and_stages_share_the_shipped_base_that_has_read_general_requests():
    from pathlib import Path

    import aha
    from aha.config import ZeroConfig, load_config
    from aha.config.r1 import R1Config
    from aha.config.rm import RMConfig
    from aha.models.loading import shipped_base_dir

    recipes = Path(aha.__file__).parent / "recipes"
    zero = load_config(ZeroConfig, recipes / "zero-bilingual.yaml", validate=False)
    r1 = load_config(R1Config, recipes / "r1-tiny.yaml", validate=False)
    bases = {shipped_base_dir(c.pretrain, c.task) for c in (zero, r1, R1Config(), RMConfig())}
    assert len(bases) == 1 and None not in bases  # one miniature: every R1 figure is on this base
    assert zero.pretrain.general_share > 0


def test_every_shipped_base_records_the_corpus_the_current_code_writes():
    """A shipped base's name hashes its settings only; an edit of a task's traces keeps the name. The
    fingerprint in its pretrain.json is what tells such a base apart: this fails until it is rebuilt."""
    from pathlib import Path

    import aha
    from aha.config import PretrainConfig, TaskConfig
    from aha.config.sections import BILINGUAL_PRETRAIN
    from aha.models.loading import shipped_base_dir
    from aha.stages.pretrain import built_from, corpus_fingerprint
    from aha.tasks import get_task

    shipped = [(PretrainConfig(), TaskConfig()), (BILINGUAL_PRETRAIN, TaskConfig(name="division_bilingual"))]
    found = set()
    for pretrain_cfg, task_cfg in shipped:
        base = shipped_base_dir(pretrain_cfg, task_cfg)
        assert base is not None
        assert built_from(base) == corpus_fingerprint(get_task(task_cfg.name), pretrain_cfg), base.name
        found.add(base.name)
    embedded = Path(aha.__file__).parent / "models" / "embedded"
    assert found == {d.name for d in embedded.iterdir() if d.is_dir()}  # a new shipped base belongs here


def test_a_cached_base_from_an_older_corpus_is_rebuilt_and_one_from_before_fingerprints_is_kept(tmp_path,
                                                                                               monkeypatch):
    import json

    from aha.config import TaskConfig
    from aha.events import Events, Recorder
    from aha.stages.pretrain import built_from, ensure_base_model
    from conftest import TINY

    monkeypatch.setenv("AHA_HOME", str(tmp_path))
    torch.set_num_threads(1)
    task = TaskConfig(name="division")
    base = ensure_base_model(TINY, task)
    fingerprint, weights = built_from(base), (base / "model.safetensors").read_bytes()
    stats = json.loads((base / "pretrain.json").read_text())

    (base / "pretrain.json").write_text(json.dumps(stats | {"corpus_fingerprint": "from-older-code"}))
    recorder = Recorder()
    assert ensure_base_model(TINY, task, Events([recorder])) == base
    assert recorder.of("warning") and "another corpus" in recorder.of("warning")[0].data["message"]
    assert built_from(base) == fingerprint  # rebuilt from its seed: the same model again
    assert (base / "model.safetensors").read_bytes() == weights

    del stats["corpus_fingerprint"]  # a base cached before fingerprints: trusted, as it always was
    (base / "pretrain.json").write_text(json.dumps(stats))
    recorder = Recorder()
    assert ensure_base_model(TINY, task, Events([recorder])) == base
    assert not recorder.of("warning") and built_from(base) is None


def test_a_shipped_base_from_another_corpus_is_passed_over_for_a_build(tmp_path, monkeypatch):
    import json
    import shutil

    import aha.models.loading as loading
    from aha.config import TaskConfig
    from aha.events import Events, Recorder
    from aha.stages.pretrain import built_from, corpus_fingerprint, ensure_base_model
    from aha.tasks import get_task
    from conftest import TINY

    torch.set_num_threads(1)
    monkeypatch.setenv("AHA_HOME", str(tmp_path / "home"))
    task = TaskConfig(name="division")
    shipped = tmp_path / "shipped"
    shutil.copytree(ensure_base_model(TINY, task), shipped)
    shutil.rmtree(tmp_path / "home")  # no cache: the lookup goes on to the shipped copy
    stats = json.loads((shipped / "pretrain.json").read_text())
    monkeypatch.setattr(loading, "shipped_base_dir", lambda *_: shipped)

    assert ensure_base_model(TINY, task) == shipped  # its corpus is the current one: used as it is
    (shipped / "pretrain.json").write_text(json.dumps(stats | {"corpus_fingerprint": "from-older-code"}))
    recorder = Recorder()
    built = ensure_base_model(TINY, task, Events([recorder]))
    assert built != shipped and built.parent == tmp_path / "home" / "base"
    assert "another corpus" in recorder.of("warning")[0].data["message"]
    assert built_from(built) == corpus_fingerprint(get_task("division"), TINY)
