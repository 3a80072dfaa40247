"""`train_tokenizer(isolate_spaces=True)`: a name is the same token ids in prose and in JSON arguments."""

from __future__ import annotations

import pytest

from model.tokenizer import default_corpus, train_tokenizer

NAMES = ["Lonu", "Degu", "BYC4", "Marisol"]


def corpus() -> list[str]:
    texts = default_corpus()
    for name in NAMES * 20:  # frequent enough that BPE learns merges for them
        texts += [f"Please delete the ticket of {name}. Thanks.", f'{{"client":"{name}"}}']
    return texts


@pytest.fixture(scope="module")
def tokenizers():
    return train_tokenizer(corpus(), vocab_size=1024), train_tokenizer(
        corpus(), vocab_size=1024, isolate_spaces=True
    )


def prose_and_json(tok, name: str) -> tuple[list[int], list[int]]:
    prose = tok.encode(f"ticket of {name}.", add_special_tokens=False)
    json_ = tok.encode(f'{{"client":"{name}"}}', add_special_tokens=False)
    return prose, json_


def contains(seq: list[int], sub: list[int]) -> bool:
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_default_tokenizer_glues_the_space_to_the_name(tokenizers):
    default, _ = tokenizers
    differs = 0
    for name in NAMES:
        prose, json_ = prose_and_json(default, name)
        bare = default.encode(name, add_special_tokens=False)
        differs += contains(json_, bare) and not contains(prose, bare)
    assert differs >= 1  # the failure mode the option exists for


def test_isolated_spaces_give_the_same_ids_in_both_places_and_round_trip(tokenizers):
    _, isolated = tokenizers
    for name in NAMES:
        prose, json_ = prose_and_json(isolated, name)
        bare = isolated.encode(name, add_special_tokens=False)
        assert contains(prose, bare) and contains(json_, bare), name
    text = 'Hi!  Two  spaces, {"id":"BYC4"} and 1234.'
    assert isolated.decode(isolated.encode(text, add_special_tokens=False)) == text


def test_entities_and_whole_numbers_are_one_token_everywhere_and_round_trip():
    entities = ["Lonu", "Degu", "BYC4", "Zorp"]  # Zorp: never in the corpus, so BPE has no merge for it
    tok = train_tokenizer(
        corpus(), vocab_size=1024, isolate_spaces=True, entities=entities, whole_numbers=100
    )
    assert len(tok) <= 1024  # entity tokens count against the budget
    for word in [*entities, "7", "42"]:
        (wid,) = tok.encode(word, add_special_tokens=False)
        for text in (f"ticket of {word}.", f'{{"client":"{word}","n":{word}}}'):
            ids = tok.encode(text, add_special_tokens=False)
            assert wid in ids, text
            assert tok.decode(ids) == text
    # a longer word that merely starts with an entity is not split around it
    ids = tok.encode("Zorpa 420", add_special_tokens=False)
    assert tok.convert_tokens_to_ids("Zorp") not in ids and tok.convert_tokens_to_ids("42") not in ids
    assert tok.decode(ids) == "Zorpa 420"


def test_bad_entities_and_a_budget_they_overflow_are_rejected():
    with pytest.raises(ValueError, match="alphanumeric"):
        train_tokenizer(corpus(), vocab_size=1024, entities=["two words"])
    with pytest.raises(ValueError, match="entity tokens"):
        train_tokenizer(corpus(), vocab_size=300, entities=[f"E{i}" for i in range(40)])


def test_key_tokens_are_one_token_before_the_value_and_round_trip():
    keys = ['"client":"', '"id":"']
    tok = train_tokenizer(
        corpus(), vocab_size=1024, isolate_spaces=True, entities=["Lonu", "BYC4"], keys=keys
    )
    assert len(tok) <= 1024  # key tokens count against the budget too
    client, id_ = (tok.convert_tokens_to_ids(k) for k in keys)
    lonu, byc4 = (tok.convert_tokens_to_ids(e) for e in ("Lonu", "BYC4"))
    text = '{"id":"BYC4","client":"Lonu"}'
    ids = tok.encode(text, add_special_tokens=False)
    assert (
        ids[ids.index(lonu) - 1] == client and ids[ids.index(byc4) - 1] == id_
    )  # the key is the token before
    assert tok.decode(ids) == text
    # a schema (`"client":{`) and a longer key that ends the same way are not the key token
    for other in ('{"client":{"type":"string"}}', '{"paid":"BYC4"}'):
        ids = tok.encode(other, add_special_tokens=False)
        assert client not in ids and id_ not in ids, other
        assert tok.decode(ids) == other


def test_bad_keys_and_a_budget_they_overflow_are_rejected():
    with pytest.raises(ValueError, match="surrounding spaces"):
        train_tokenizer(corpus(), vocab_size=1024, keys=[' "a":"'])
    with pytest.raises(ValueError, match="key tokens"):
        train_tokenizer(corpus(), vocab_size=300, keys=[f'"k{i}":"' for i in range(40)])
